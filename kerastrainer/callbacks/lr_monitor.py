"""LearningRateMonitor: log the learning rate of every optimizer."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import keras

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class LearningRateMonitor(Callback):
    """Logs ``lr`` (``lr-<name>`` for a dict of optimizers) into ``trainer.callback_metrics``.

    The value is read at the start of every epoch, or (``"step"``) after the compiled calls at which
    the loggers write, i.e. every ``log_every_n_steps`` steps; a ``LearningRateSchedule`` is
    evaluated at the optimizer's current step.

    Args:
        logging_interval: ``"epoch"`` or ``"step"``.

    Examples:
        >>> monitor = LearningRateMonitor(logging_interval="step")
    """

    chunk_aware = True

    def step_interval(self, trainer: Trainer) -> int | None:
        return trainer.log_every_n_steps if self.logging_interval == "step" else None

    def __init__(self, *, logging_interval: str = "epoch") -> None:
        if logging_interval not in ("epoch", "step"):
            raise ValueError("LearningRateMonitor: `logging_interval` must be 'epoch' or 'step'. "
                             f"Received: logging_interval={logging_interval!r}")
        self.logging_interval = logging_interval

    def _log(self, module):
        optimizers = module.optimizer if isinstance(module.optimizer, dict) else {"": module.optimizer}
        for name, optimizer in optimizers.items():
            value = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            module.log(f"lr-{name}" if name else "lr", value, prog_bar=False)

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        if self.logging_interval == "epoch":
            self._log(module)

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.logging_interval == "step" and (step % trainer.log_every_n_steps == 0 or step == 1):
            self._log(module)
