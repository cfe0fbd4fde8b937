"""How batches reach a compiled loop: from a ``tf.data`` iterator, or sliced from arrays in memory."""

from __future__ import annotations

import warnings
import weakref
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from kerastrainer.data.sources import restore_iterator
from kerastrainer.distributed.strategies import distribute_dataset
from kerastrainer.stages import VAL, Stage


class Loader(NamedTuple):
    """One dataset of an evaluation run: the stage it reports under (each of several datasets has
    its own, with its own accumulators and step), its feed, and how many batches to run."""

    stage: Stage
    feed: Any
    num_batches: int | None  # None: to the end of the data
    exact: bool  # the data has num_batches batches (else: at most that many)


def sanity_steps(num_sanity_val_steps: int, num_val_batches: int | None) -> int | None:
    """Batches of one validation dataset in the sanity check (``-1``: all; ``None``: all, of unknown
    length)."""
    if num_sanity_val_steps <= 0:  # -1: all of them
        return num_val_batches
    return num_sanity_val_steps if num_val_batches is None else min(num_sanity_val_steps, num_val_batches)


def loader_stages(stage: Stage, count: int) -> list:
    """``[stage]`` for one dataset; one `Stage.for_dataloader` stage per dataset for several."""
    return [stage] if count == 1 else [stage.for_dataloader(i) for i in range(count)]


def eval_loaders(stage: Stage, sources, counts, *, strategy, num_workers: int = 1) -> list:
    """The `Loader`s of a ``validate`` or ``test`` run over ``sources`` (``counts`` batches each)."""
    return [Loader(s, open_feed(source, n, strategy=strategy, num_workers=num_workers), n, n is not None)
            for s, source, n in zip(loader_stages(stage, len(sources)), sources, counts)]


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
        vals: the validation ones (a list: empty, one, or several datasets).
        num_batches: training batches per epoch (``None``: unknown).
        num_val_batches: per validation dataset, its batches per run (``None``: unknown, ``0``: none).
        start: ``(epoch, batch)`` the fit starts at (a resumed fit skips what came before).
        strategy: the run's ``tf.distribute.Strategy``.
        num_workers: worker processes.
    """

    def __init__(self, train, vals, num_batches, num_val_batches, *, start=(0, 0), strategy,
                 num_workers: int = 1) -> None:
        self.train = train
        self.vals = list(vals)
        self.val_counts = list(num_val_batches)
        self.val_stages = loader_stages(VAL, len(self.vals))
        self._strategy, self._workers = strategy, num_workers
        self._train = None
        if num_batches is not None:
            self._train = self._open_training(num_batches, skip=start[0] * num_batches + start[1],
                                              repeat=True)
        self._vals = [self._open(val, n, repeat=True) if n else None
                      for val, n in zip(self.vals, self.val_counts)]

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

    def validation(self) -> list:
        """The `Loader`s of a validation run, one per dataset (those limited to 0 batches left out)."""
        return [Loader(stage, feed if feed is not None else self._open(val, None), n, n is not None)
                for stage, val, feed, n in zip(self.val_stages, self.vals, self._vals, self.val_counts)
                if n != 0]

    def sanity(self, num_sanity_val_steps: int) -> list:
        """The `Loader`s of the sanity check: each dataset's first batches, from a feed of their own
        (not the repeated iterator, whose first validation run would then start mid-way)."""
        loaders = []
        for stage, val, feed, n in zip(self.val_stages, self.vals, self._vals, self.val_counts):
            steps = sanity_steps(num_sanity_val_steps, n)
            if n != 0:
                own = feed if feed is not None and feed.in_memory else self._open(val, steps)
                loaders.append(Loader(stage, own, steps, n is not None))
        return loaders


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
            self._epoch = epoch
            self.order = self.source.order(epoch)


def concatenate(outputs: list):
    """Batches of predictions (tensors, or structures of them) joined into NumPy arrays."""
    if not outputs:
        return None
    return tf.nest.map_structure(lambda *parts: np.concatenate([np.asarray(p) for p in parts]),
                                 *outputs)
