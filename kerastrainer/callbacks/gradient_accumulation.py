"""GradientAccumulationScheduler: change ``accumulate_grad_batches`` by epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """Sets ``trainer.accumulate_grad_batches`` from a schedule ``{first_epoch: batches}``.

    The number of batches is a device variable of the compiled step, so changing it does not
    retrace. Epoch 0 uses 1 unless the schedule says otherwise.

    Args:
        scheduling: ``{epoch: k}``, e.g. ``{0: 1, 4: 2, 8: 4}``; epochs count from 0.

    Raises:
        ValueError: keys or values that are not ints >= 0 / >= 1.

    Examples:
        >>> scheduler = GradientAccumulationScheduler({0: 1, 2: 4})
    """

    def __init__(self, scheduling: dict) -> None:
        if not scheduling or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 0 or isinstance(v, bool)
                or not isinstance(v, int) or v < 1 for k, v in scheduling.items()):
            raise ValueError("GradientAccumulationScheduler: `scheduling` must map epochs (ints >= 0) "
                             f"to batch counts (ints >= 1). Received: scheduling={scheduling!r}")
        self.scheduling = dict(sorted(scheduling.items()))

    def setup(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        # The compiled step accumulates only when the largest value is > 1 at compile time.
        if stage == "fit":
            trainer.accumulate_grad_batches = max(self.scheduling.values())

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        value = 1
        for epoch, batches in self.scheduling.items():
            if trainer.current_epoch >= epoch:
                value = batches
        trainer.accumulate_grad_batches = value
