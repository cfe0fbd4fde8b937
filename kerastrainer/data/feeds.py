"""How batches reach a compiled loop: from a ``tf.data`` iterator, or sliced from arrays in memory."""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import tensorflow as tf

from kerastrainer.data.sources import restore_iterator
from kerastrainer.distributed.strategies import distribute_dataset


def open_feed(source, num_batches, *, strategy, num_workers: int = 1, repeat: bool = False,
              skip: int = 0):
    """How ``num_batches`` batches per epoch of ``source`` reach the compiled calls.

    Array data of known length stays in memory (an `ArrayFeed`: its position is the batch
    index, so ``skip`` is not needed); anything else goes through one ``tf.data`` iterator (an
    `IteratorFeed` over the first ``num_batches`` batches, repeated if asked, ``skip``
    batches dropped), split over the strategy's replicas.
    """
    if num_batches is not None and source.in_memory:
        feed = ArrayFeed(source, to_gpu=strategy.num_replicas_in_sync == 1)
        feed.start_epoch(0)
        return feed
    dataset = source.dataset(limit=num_batches, repeat=repeat, skip=skip)
    return IteratorFeed(iter(distribute_dataset(strategy, dataset, num_workers)))


class FitFeeds:
    """Where a fit's compiled calls get their batches.

    Known lengths get one training and one validation feed for the whole fit, over repeated data:
    deleting a ``tf.data`` iterator at every epoch end can stall until an autotuning timer fires.
    Data of unknown length gets a fresh feed per epoch and per validation run.

    Args:
        train: the training `Source`.
        val: the validation one, or ``None``.
        num_batches: training batches per epoch (``None``: unknown).
        num_val_batches: batches per validation run (``None``: unknown, ``0``: none).
        start: ``(epoch, batch)`` the fit starts at (a resumed fit skips what came before).
        strategy: the run's ``tf.distribute.Strategy``.
        num_workers: worker processes.
    """

    def __init__(self, train, val, num_batches, num_val_batches, *, start=(0, 0), strategy,
                 num_workers: int = 1) -> None:
        self.train, self.val = train, val
        self._strategy, self._workers = strategy, num_workers
        self._train = self._val = None
        if num_batches is not None:
            self._train = self._open_training(num_batches, skip=start[0] * num_batches + start[1],
                                              repeat=True)
        if num_val_batches:
            self._val = self._open(val, num_val_batches, repeat=True)

    def _open(self, source, num_batches, **kwargs):
        return open_feed(source, num_batches, strategy=self._strategy, num_workers=self._workers,
                         **kwargs)

    def _open_training(self, num_batches, *, skip, repeat=False):
        """The training feed from batch ``skip`` on: a saved iterator state puts a fresh iterator
        there at once; without one (or if it does not fit this pipeline) the batches before are
        read and dropped. The iterator is lent to the Source, whose state_dict saves it."""
        saved, self.train.resumed_state = self.train.resumed_state, None
        feed = None
        if saved is not None and skip and not self.train.in_memory:
            feed = self._open(self.train, num_batches, repeat=repeat)
            if not restore_iterator(feed.iterator, saved):
                warnings.warn("The checkpoint's input state does not fit this input pipeline; the "
                              f"resumed fit reads and drops the {skip} batches before its position.")
                feed = None
        feed = feed or self._open(self.train, num_batches, repeat=repeat, skip=skip)
        iterator = getattr(feed, "iterator", None)
        self.train.iterator = weakref.ref(iterator) if iterator is not None else None
        return feed

    def training(self, epoch: int, batch: int):
        """The feed of ``epoch``, from its batch ``batch`` on."""
        feed = self._train if self._train is not None else self._open_training(None, skip=batch)
        feed.start_epoch(epoch)
        return feed

    def validation(self):
        """The feed of a validation run."""
        return self._val if self._val is not None else self._open(self.val, None)

    def sanity(self, steps):
        """The feed of the sanity check's first ``steps`` batches (not the repeated iterator, whose
        first validation run would then start mid-way)."""
        if self._val is not None and self._val.in_memory:
            return self._val
        return self._open(self.val, steps)


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
        source: an array `Source` (``source.in_memory`` is true).
        to_gpu: copy the arrays to the first GPU, if there is one (for a single replica).

    Attributes:
        order: this epoch's row order (set by `start_epoch`).
        full_batches: how many batches hold ``batch_size`` rows (a last, smaller one may follow).
    """

    in_memory = True

    def __init__(self, source, *, to_gpu: bool = True) -> None:
        self.source = source
        self.batch_size = source.batch_size
        self.full_batches = source.rows // source.batch_size
        self.tensors = source.tensors
        # One device: copied once, not at every call. Several replicas gather from host memory.
        if to_gpu and tf.config.list_logical_devices("GPU"):
            with tf.device("/GPU:0"):
                self.tensors = tf.nest.map_structure(tf.identity, source.tensors)
        self.order: tf.Tensor | None = None
        self._epoch: int | None = None

    def start_epoch(self, epoch: int) -> None:
        """Draws the epoch's row order (the same one the ``tf.data`` path would use)."""
        if epoch != self._epoch or self.order is None:
            self._epoch, self.order = epoch, self.source.order(epoch)


def concatenate(outputs: list):
    """Batches of predictions (tensors, or structures of them) joined into NumPy arrays."""
    if not outputs:
        return None
    return tf.nest.map_structure(lambda *parts: np.concatenate([np.asarray(p) for p in parts]),
                                 *outputs)
