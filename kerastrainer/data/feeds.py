"""How batches reach a compiled loop: from a ``tf.data`` iterator, or sliced from arrays in memory."""

from __future__ import annotations

import tensorflow as tf


class IteratorFeed:
    """Batches from a ``tf.data`` iterator (any kind of data).

    The trainer keeps one iterator for a whole fit over a repeated dataset, because deleting a
    ``tf.data`` iterator can stall until an autotuning timer fires.
    """

    in_memory = False

    def __init__(self, iterator) -> None:
        self.iterator = iterator

    def start_epoch(self, epoch: int) -> None:
        """Nothing to do: the repeated dataset already yields the next epoch's batches."""


class ArrayFeed:
    """Arrays kept as tensors; the compiled loop gathers each batch's rows itself (no ``tf.data``).

    Args:
        source: an array :class:`~kerastrainer.data.Source` (``source.in_memory`` is true).
        to_gpu: copy the arrays to the first GPU, if there is one (for a single replica).

    Attributes:
        order: this epoch's row order (set by :meth:`start_epoch`).
        full_batches: how many batches hold ``batch_size`` rows; a last, smaller batch follows when
            ``last_size`` is not zero.
    """

    in_memory = True

    def __init__(self, source, *, to_gpu: bool = True) -> None:
        self.source = source
        self.batch_size = source.batch_size
        self.full_batches, self.last_size = divmod(source.rows, source.batch_size)
        self.tensors = source.tensors
        # One device: copied once, not at every call. Several replicas gather from host memory.
        if to_gpu and tf.config.list_logical_devices("GPU"):
            with tf.device("/GPU:0"):
                self.tensors = tf.nest.map_structure(tf.identity, source.tensors)
        self.order = None
        self._epoch = None

    def start_epoch(self, epoch: int) -> None:
        """Draws the epoch's row order (the same one the ``tf.data`` path would use)."""
        if epoch != self._epoch or self.order is None:
            self._epoch, self.order = epoch, self.source.order(epoch)
