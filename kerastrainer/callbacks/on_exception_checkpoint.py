"""OnExceptionCheckpoint: save a checkpoint when the run fails or is interrupted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import os

from kerastrainer.callbacks.base import Callback
from kerastrainer.stages import TRAIN

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class OnExceptionCheckpoint(Callback):
    """Writes ``<dirpath>/<filename>.ckpt`` when any exception (or an interrupt) escapes ``fit``.

    The state is the one at the end of the last completed compiled call, so resuming from it with
    ``trainer.fit(..., ckpt_path=path)`` continues exactly there.

    Args:
        dirpath: the folder.
        filename: the file name without extension.

    Examples:
        >>> callback = OnExceptionCheckpoint(dirpath="checkpoints")
    """

    def __init__(self, *, dirpath: str | os.PathLike, filename: str = "on_exception") -> None:
        self.dirpath = os.fspath(dirpath)
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath, self.filename + ".ckpt")

    def on_exception(self, trainer: Trainer, module: TrainModule, exception: BaseException) -> None:
        if trainer.stage == TRAIN and trainer.module is not None and module.optimizer is not None:
            trainer.save_checkpoint(self.ckpt_path)
