"""Prediction writers: predictions go to disk as they are made, so ``predict`` need not hold them."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import io
import os

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.callbacks.base import Callback
from kerastrainer.checkpoint_io import atomic_write_bytes
from kerastrainer.data.feeds import concatenate

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer

WRITE_INTERVALS = ("batch", "epoch", "batch_and_epoch")


class BasePredictionWriter(Callback):
    """Lightning's prediction writer: override ``write_on_batch_end`` and/or
    ``write_on_epoch_end``; pair it with ``trainer.predict(..., return_predictions=False)`` to keep
    only one batch in memory at a time.

    Each batch's prediction reaches the host once, as NumPy array(s) (a structure of them when
    ``predict_step`` returns one), when the batch ends: a writer is what needs the values.

    Args:
        write_interval: ``"batch"`` (``write_on_batch_end`` after every batch), ``"epoch"``
            (``write_on_epoch_end`` once, with every batch's prediction) or ``"batch_and_epoch"``.

    Raises:
        ValueError: another ``write_interval``.

    Examples:
        >>> class Saver(BasePredictionWriter):
        ...     def write_on_batch_end(self, trainer, module, prediction, batch_idx):
        ...         np.save(f"preds/{batch_idx}.npy", prediction)
    """

    def __init__(self, write_interval: str = "batch") -> None:
        if write_interval not in WRITE_INTERVALS:
            raise ValueError(f"{type(self).__name__}: `write_interval` must be one of "
                             f"{', '.join(map(repr, WRITE_INTERVALS))}. Received: write_interval={write_interval!r}")
        self.write_interval = write_interval
        self._predictions: list[Any] = []

    def write_on_batch_end(self, trainer: Trainer, module: TrainModule, prediction: Any,
                           batch_idx: int) -> None:
        """Writes one batch's ``prediction`` (NumPy). Override it for ``"batch"`` intervals.

        Raises:
            NotImplementedError: the subclass did not override it.
        """
        raise NotImplementedError(f"{type(self).__name__} has write_interval={self.write_interval!r} "
                                  "but does not override write_on_batch_end.")

    def write_on_epoch_end(self, trainer: Trainer, module: TrainModule, predictions: list[Any]) -> None:
        """Writes ``predictions``, one NumPy entry per batch, in order. Override it for ``"epoch"``.

        Raises:
            NotImplementedError: the subclass did not override it.
        """
        raise NotImplementedError(f"{type(self).__name__} has write_interval={self.write_interval!r} "
                                  "but does not override write_on_epoch_end.")

    def on_predict_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._predictions = []

    def on_predict_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                             batch_idx: int) -> None:
        prediction = tf.nest.map_structure(np.asarray, outputs)
        if self.write_interval != "epoch":
            self.write_on_batch_end(trainer, module, prediction, batch_idx)
        if self.write_interval != "batch":
            self._predictions.append(prediction)

    def on_predict_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self.write_interval != "batch":
            predictions, self._predictions = self._predictions, []
            self.write_on_epoch_end(trainer, module, predictions)


class PredictionWriter(BasePredictionWriter):
    """Writes predictions as ``.npy`` files into ``output_dir`` (atomically; the chief only, since
    every worker predicts the same rows): ``batch_000000.npy``, ... per batch, or one
    ``predictions.npy`` (the batches joined, as ``predict`` returns them) per epoch. A
    ``predict_step`` returning a dict or tuple gives ``.npz`` files, one array per entry.

    Args:
        output_dir: the folder (made when missing).
        write_interval: ``"batch"``, ``"epoch"`` or ``"batch_and_epoch"``.

    Raises:
        ValueError: a bad ``write_interval``.

    Examples:
        >>> writer = PredictionWriter("preds", write_interval="batch")
        >>> trainer = kt.Trainer(callbacks=[writer])  # doctest: +SKIP
        >>> trainer.predict(module, x, return_predictions=False)  # doctest: +SKIP
    """

    def __init__(self, output_dir: str | os.PathLike, write_interval: str = "batch") -> None:
        super().__init__(write_interval)
        self.output_dir = os.fspath(output_dir)

    def write_on_batch_end(self, trainer: Trainer, module: TrainModule, prediction: Any,
                           batch_idx: int) -> None:
        self._save(trainer, f"batch_{batch_idx:06d}", prediction)

    def write_on_epoch_end(self, trainer: Trainer, module: TrainModule, predictions: list[Any]) -> None:
        self._save(trainer, "predictions", concatenate(predictions))

    def _save(self, trainer, stem, value) -> None:
        if not trainer.is_global_zero or value is None:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        buffer = io.BytesIO()
        if isinstance(value, np.ndarray):
            np.save(buffer, value)
            name = stem + ".npy"
        else:  # a structure: its flattened paths name the arrays
            flat: dict[str, Any] = {"/".join(map(str, path)) or "0": np.asarray(leaf)
                                    for path, leaf in keras.tree.flatten_with_path(value)}
            np.savez(buffer, **flat)
            name = stem + ".npz"
        atomic_write_bytes(os.path.join(self.output_dir, name), buffer.getvalue())
