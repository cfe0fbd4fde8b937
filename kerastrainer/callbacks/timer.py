"""Timer: how long each stage ran, and a time limit for training (Lightning's ``Timer``)."""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

from kerastrainer.callbacks.base import Callback
from kerastrainer.flags import max_time_seconds

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer

STAGES = ("train", "validate", "test", "predict")


class Timer(Callback):
    """Measures the time spent in each stage and stops training after ``duration``.

    The training time survives a resume: it is part of the checkpoint (``state_dict``), so a run
    limited to 8 hours stops after 8 hours of training in all, however often it was restarted
    (the Trainer's ``max_time`` counts the current process only). The limit is checked at every
    compiled call (``interval="step"``; the call's chunk of batches is not cut short) or at every
    epoch end; all workers stop together.

    Args:
        duration: the training time limit: seconds, a ``datetime.timedelta``, a dict such as
            ``{"hours": 8}`` or ``"DD:HH:MM:SS"``; ``None``: measure only.
        interval: ``"step"`` or ``"epoch"``: when the limit is checked.
        verbose: print when the limit stops training.

    Raises:
        ValueError, TypeError: a bad ``duration`` or ``interval`` (the message names it).

    Example:
        >>> timer = Timer(duration="00:08:00:00")
        >>> timer.time_elapsed("train")
        0.0
    """

    chunk_aware = True  # checked once per compiled call: chunks need not be one batch long

    def __init__(self, duration: float | datetime.timedelta | dict | str | None = None, *,
                 interval: str = "step", verbose: bool = True) -> None:
        if interval not in ("step", "epoch"):
            raise ValueError(f"Timer: `interval` must be 'step' or 'epoch'. Received: "
                             f"interval={interval!r}")
        self.duration = max_time_seconds(duration, "duration")
        self.interval = interval
        self.verbose = verbose
        self._total = dict.fromkeys(STAGES, 0.0)  # seconds of the stage's finished runs
        self._started: dict[str, float | None] = dict.fromkeys(STAGES, None)

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds spent in ``stage`` (``"train"``, ``"validate"``, ``"test"``, ``"predict"``),
        its running part included; training time includes that of the runs it resumed."""
        started = self._started[stage]
        return self._total[stage] + (time.monotonic() - started if started is not None else 0.0)

    def time_remaining(self, stage: str = "train") -> float | None:
        """Seconds left of ``duration`` (``None`` without one)."""
        if self.duration is None:
            return None
        return max(0.0, self.duration - self.time_elapsed(stage))

    def _start(self, stage: str) -> None:
        self._started[stage] = time.monotonic()

    def _end(self, stage: str) -> None:
        self._total[stage] = self.time_elapsed(stage)
        self._started[stage] = None

    def _check(self, trainer: Trainer) -> None:
        if self.duration is None or self.time_elapsed("train") < self.duration:
            return
        if self.verbose and not trainer.should_stop and trainer.is_global_zero:
            print(f"Timer: {datetime.timedelta(seconds=round(self.duration))} of training reached; "
                  "stopping.")
        trainer.should_stop = True

    def on_train_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._start("train")

    def on_train_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._end("train")

    def on_validation_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._start("validate")

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._end("validate")

    def on_test_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._start("test")

    def on_test_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._end("test")

    def on_predict_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._start("predict")

    def on_predict_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._end("predict")

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        if self.interval == "step":
            self._check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self.interval == "epoch":
            self._check(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in STAGES}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._total.update({stage: float(seconds)
                            for stage, seconds in state_dict["time_elapsed"].items()})
        for stage in STAGES:
            if self._started[stage] is not None:  # restored during a run: count from now
                self._started[stage] = time.monotonic()
