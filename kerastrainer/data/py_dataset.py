"""A ``keras.utils.PyDataset`` read by index inside ``tf.data``, ``workers`` batches at a time.

Keras's ``fit`` reads a PyDataset with ``workers`` threads (or processes) feeding a queue of
``max_queue_size`` batches, shuffles the batch order every epoch when ``shuffle=True``, and calls
``on_epoch_begin`` / ``on_epoch_end`` around each epoch, never while a batch of that epoch is still
being read. Here the batch indices of an epoch are a ``tf.data`` pipeline (shuffled like array rows:
by a seed and the epoch, so a resumed run skips to its position without reading a single batch), and
``BatchFetcher`` reads each index in a ``tf.data`` parallel map with ``workers`` calls in flight,
in order.
"""

from __future__ import annotations

from typing import Any, Callable

import threading

import numpy as np
import tensorflow as tf

#: How long a read of the next epoch waits for the previous epoch's reads to finish before it
#: goes on anyway (a ``__getitem__`` that never returns must not hang the run silently forever).
EPOCH_GATE_TIMEOUT_S = 600.0


class BatchFetcher:
    """Reads batch ``index`` of ``data`` for ``tf.data``; the epoch hooks run between epochs.

    Args:
        data: the PyDataset.
        spec: the structure of ``tf.TensorSpec`` of one batch.
        normalize: turns what ``__getitem__`` returned into that structure of arrays.
    """

    def __init__(self, data: Any, spec: Any, normalize: Callable[[Any], Any]) -> None:
        self.data, self.spec, self.normalize = data, spec, normalize
        self._flat_spec = tf.nest.flatten(spec)
        self._changed = threading.Condition()
        self._done: dict[tuple[int, int], int] = {}  # reads finished, by (pipeline, epoch)
        self._ended: set[tuple[int, int]] = set()
        self._begun: set[tuple[int, int]] = set()
        self._pipelines = 0

    def new_pipeline(self) -> int:
        """A number for one more pipeline over the data (each counts its epochs from its own)."""
        self._pipelines += 1
        return self._pipelines

    def read(self, pipeline: int, first_epoch: int, epoch: Any, index: Any, expected: Any) -> Any:
        """The traced read of batch ``index`` in ``epoch`` (scalar tensors); ``expected``: how many
        reads that epoch has in this pipeline (fewer in a resumed first epoch). Returns the batch
        with its static shapes."""
        flat = tf.numpy_function(self._read, [np.int64(pipeline), np.int64(first_epoch), epoch, index, expected],
                                 [s.dtype for s in self._flat_spec], stateful=True)
        for tensor, spec in zip(flat, self._flat_spec):
            tensor.set_shape(spec.shape)
        return tf.nest.pack_sequence_as(self.spec, flat)

    def _read(self, pipeline, first_epoch, epoch, index, expected):
        key = (int(pipeline), int(epoch))
        self._enter(key, waits=int(epoch) > int(first_epoch))
        try:
            batch = tf.nest.flatten(self.normalize(self.data[int(index)]))
        finally:
            self._leave(key, int(expected))
        return [np.asarray(value, dtype=spec.dtype.as_numpy_dtype) for value, spec in zip(batch, self._flat_spec)]

    def _enter(self, key: tuple[int, int], *, waits: bool) -> None:
        with self._changed:
            if key in self._begun:
                return
            if waits:  # every read of the epoch before was issued first (the map keeps the order):
                # wait until they are all done and its on_epoch_end ran, then begin this epoch.
                previous = (key[0], key[1] - 1)
                self._changed.wait_for(lambda: previous in self._ended, timeout=EPOCH_GATE_TIMEOUT_S)
            self._begun.add(key)
            self.data.on_epoch_begin()

    def _leave(self, key: tuple[int, int], expected: int) -> None:
        with self._changed:
            self._done[key] = self._done.get(key, 0) + 1
            if self._done[key] == expected:  # the epoch's last read to finish, whichever it is
                self._ended.add(key)
                self.data.on_epoch_end()
            self._changed.notify_all()
