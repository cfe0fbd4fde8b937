"""TerminateOnNaN: stop at the first non-finite loss or gradient, checked on the device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class TerminateOnNaN(Callback):
    """Turns on ``Trainer(detect_anomaly=True)``: the compiled step checks the loss and gradients
    and the run stops with an error naming the global step and the value that was not finite.

    The checks run inside the compiled step; nothing is copied to the host per step.

    Examples:
        >>> callback = TerminateOnNaN()
    """

    def setup(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        trainer.detect_anomaly = True
