"""TensorBoardLogger: tf.summary scalars, hparams, weight histograms and the model graph."""

from __future__ import annotations

import os
from typing import Any

import importlib.util

import numpy as np
import tensorflow as tf

from kerastrainer.loggers.base import Logger

MISSING = ("TensorBoardLogger needs the `tensorboard` package, which is not installed. Install it with "
           "`pip install kerastrainer[tensorboard]` (or `pip install tensorboard`), or use CSVLogger.")


#: Rows with one set of keys written a value at a time before that set gets a compiled writer: a
#: trace costs about as much as 30 such rows, so short runs never make one.
PLAIN_ROWS = 30


def tensorboard_available() -> bool:
    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        return False


class TensorBoardLogger(Logger):
    """Writes TensorBoard event files into ``<save_dir>/<name>/version_N``.

    Args:
        save_dir: the parent folder (default: the Trainer's ``default_root_dir``).
        name: the experiment folder name.
        version: the run version (default: the next free one).
        histogram_freq: write histograms of every weight each n epochs (0: never).
        log_graph: write the module's forward graph when fit starts.

    Raises:
        ModuleNotFoundError: the ``tensorboard`` package is missing (the message says how to add it).

    Examples:
        >>> logger = TensorBoardLogger("runs", histogram_freq=1)  # doctest: +SKIP
    """

    def __init__(self, save_dir: str | os.PathLike | None = None, *, name: str = "kt_logs",
                 version: int | str | None = None, histogram_freq: int = 0,
                 log_graph: bool = True) -> None:
        if not tensorboard_available():
            raise ModuleNotFoundError(MISSING)
        super().__init__(save_dir, name=name, version=version)
        self.histogram_freq = histogram_freq
        self.log_graph = log_graph
        self._writer = None
        self._rows: dict[tuple, int] = {}  # rows written so far, by their tuple of keys
        self._row_writers: dict[tuple, Any] = {}  # compiled writers, by tuple of keys

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def log_metrics(self, metrics: dict, step: int) -> None:
        # NumPy values, not Python numbers: TensorFlow keeps every distinct Python scalar it
        # converts to a tensor in a cache that never shrinks, about 0.75 KB each, so a run logging
        # ten values per step would grow by several KB per step.
        scalars = {key: np.float32(value) for key, value in metrics.items()
                   if key != "epoch" and isinstance(value, (int, float))}
        keys = tuple(scalars)
        if not keys:
            return
        self._rows[keys] = written = self._rows.get(keys, 0) + 1
        if written <= PLAIN_ROWS:  # one eager summary op per value: about 0.4 ms each on a CPU
            with self.writer.as_default(step=np.int64(step)):
                for key, value in scalars.items():
                    tf.summary.scalar(key, value)
            return
        if keys not in self._row_writers:
            self._row_writers[keys] = self._row_writer(keys)
        self._row_writers[keys](np.array(list(scalars.values()), np.float32), np.int64(step))

    def _row_writer(self, keys: tuple) -> Any:
        """One compiled call that writes a row of ``keys``: the same events as the eager ops."""
        writer = self.writer

        def write(values, step):
            with writer.as_default(step=step):
                for index, key in enumerate(keys):
                    tf.summary.scalar(key, values[index])

        signature = (tf.TensorSpec([len(keys)], tf.float32), tf.TensorSpec([], tf.int64))
        # the concrete function itself: calling it skips tf.function's argument matching
        return tf.function(write, input_signature=signature, autograph=False).get_concrete_function()

    def log_hyperparams(self, params: dict) -> None:
        super().log_hyperparams(params)
        from tensorboard.plugins.hparams import api as hp

        plain = {k: v if isinstance(v, (bool, int, float, str)) else repr(v) for k, v in params.items()}
        with self.writer.as_default():
            hp.hparams(plain)

    def log_weights(self, module: Any, step: int) -> None:
        """Histograms of every weight, named by the module's variable paths."""
        with self.writer.as_default():
            for variable in module.weights:
                tf.summary.histogram(variable.path, variable, step=step)

    def after_epoch(self, module: Any, epoch: int) -> None:
        """Writes the weight histograms every ``histogram_freq`` epochs."""
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            self.log_weights(module, epoch)

    def log_model_graph(self, module: Any, input_signature: Any) -> None:
        """The forward pass's graph, when ``log_graph`` (skipped silently for models that cannot be
        traced so)."""
        if not self.log_graph or input_signature is None:
            return
        try:
            graph = tf.function(lambda x: module(x, training=False)).get_concrete_function(
                input_signature).graph
        except Exception:  # noqa: BLE001 - the graph is a nicety, never a reason to fail a run
            return
        with self.writer.as_default():
            tf.summary.graph(graph)

    def save(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def finalize(self, status: str) -> None:
        self._row_writers.clear()  # they write to this writer
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
