"""ThroughputMonitor: training speed in batches (and samples) per second, logged."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class ThroughputMonitor(Callback):
    """Logs ``batches_per_sec`` (and ``samples_per_sec`` when ``batch_size`` is given) over the
    batches since the previous logging point, every ``log_every_n_steps`` steps; and at each
    epoch end the epoch's averages, ``epoch_batches_per_sec`` and ``epoch_samples_per_sec``.

    Times are the host's clock between logging points, which the device's pace sets over a window
    of many steps; nothing is read from the device for them (no per-step sync). The first window
    of a fit includes compiling the step.

    Args:
        batch_size: rows per batch, for the samples/s values (Lightning takes a
            ``batch_size_fn``; the Trainer's batches hold ``batch_size`` rows but the last).

    Raises:
        ValueError: ``batch_size`` is not a positive integer.

    Examples:
        >>> monitor = ThroughputMonitor(batch_size=32)
    """

    chunk_aware = True

    def __init__(self, *, batch_size: int | None = None) -> None:
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError("ThroughputMonitor: `batch_size` must be a positive integer or None. "
                             f"Received: batch_size={batch_size!r}")
        self.batch_size = batch_size
        # (clock, batches of the epoch done) at the window's and the epoch's start; set by the
        # first batch of an epoch, which is where a resumed run starts too
        self._window: tuple[float, int] | None = None
        self._epoch: tuple[float, int] | None = None
        self._done = 0

    def step_interval(self, trainer: Trainer) -> int | None:
        return trainer.log_every_n_steps  # compiled calls end where the loggers write

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._window = self._epoch = None

    def on_train_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        if self._window is None:
            self._window = self._epoch = (time.perf_counter(), batch_idx)

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        self._done = batch_idx + 1  # batch_idx: the last batch of the compiled call
        if self._window is not None and trainer.global_step % trainer.log_every_n_steps == 0:
            self._log(module, "", self._window)
            self._window = (time.perf_counter(), self._done)

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self._epoch is not None:
            self._log(module, "epoch_", self._epoch)
        self._window = self._epoch = None

    def _log(self, module, prefix: str, since: tuple[float, int]) -> None:
        seconds = time.perf_counter() - since[0]
        batches = self._done - since[1]
        if seconds <= 0 or batches <= 0:
            return
        module.log(f"{prefix}batches_per_sec", batches / seconds, prog_bar=False)
        if self.batch_size is not None:
            module.log(f"{prefix}samples_per_sec", batches * self.batch_size / seconds, prog_bar=False)
