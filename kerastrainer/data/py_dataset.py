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
        self._in_flight: dict[tuple[int, int], int] = {}  # by (pipeline, epoch)
        self._ended: set[tuple[int, int]] = set()
        self._begun: set[tuple[int, int]] = set()
        self._pipelines = 0

    def new_pipeline(self) -> int:
        """A number for one more pipeline over the data (each counts its epochs from its own)."""
        self._pipelines += 1
        return self._pipelines

    def read(self, pipeline: int, epoch: Any, index: Any, last: Any) -> Any:
        """The traced read: ``epoch``, ``index`` and ``last`` (the epoch's final position) are
        scalar tensors; returns the batch with its static shapes."""
        flat = tf.numpy_function(self._read, [np.int64(pipeline), epoch, index, last],
                                 [s.dtype for s in self._flat_spec], stateful=True)
        for tensor, spec in zip(flat, self._flat_spec):
            tensor.set_shape(spec.shape)
        return tf.nest.pack_sequence_as(self.spec, flat)

    def _read(self, pipeline, epoch, index, last):
        epoch = (int(pipeline), int(epoch))
        self._enter(epoch)
        try:
            batch = tf.nest.flatten(self.normalize(self.data[int(index)]))
        finally:
            self._leave(epoch, bool(last))
        return [np.asarray(value, dtype=spec.dtype.as_numpy_dtype) for value, spec in zip(batch, self._flat_spec)]

    def _enter(self, epoch: tuple[int, int]) -> None:
        with self._changed:
            if epoch not in self._begun:
                # The previous epoch's reads were all issued before this one (the map keeps the
                # order): wait until they are done and its on_epoch_end ran, then begin this epoch.
                previous = (epoch[0], epoch[1] - 1)
                self._changed.wait_for(lambda: previous not in self._in_flight or previous in self._ended,
                                       timeout=EPOCH_GATE_TIMEOUT_S)
                self._begun.add(epoch)
                self.data.on_epoch_begin()
            self._in_flight[epoch] = self._in_flight.get(epoch, 0) + 1

    def _leave(self, epoch: tuple[int, int], last: bool) -> None:
        with self._changed:
            self._in_flight[epoch] -= 1
            if last:  # the epoch's final position: on_epoch_end once its other reads are done
                self._changed.wait_for(lambda: self._in_flight[epoch] == 0, timeout=EPOCH_GATE_TIMEOUT_S)
                self._ended.add(epoch)
                self.data.on_epoch_end()
            self._changed.notify_all()
