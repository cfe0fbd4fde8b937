"""Input adapters: everything a user may pass as data becomes a batched ``tf.data`` pipeline."""

from __future__ import annotations

from typing import Any

import itertools
import numbers
import os
import types
import warnings
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.data.buffers import shuffle_buffer_bytes
from kerastrainer.data.py_dataset import BatchFetcher

DEFAULT_BATCH_SIZE = 32


#: Array data up to this many bytes is fed from memory inside the compiled loop (no tf.data).
IN_MEMORY_MAX_BYTES = 2 * 1024**3

#: A training iterator's saved state larger than this is left out of checkpoints (replayed instead).
MAX_INPUT_STATE_BYTES = 64 * 1024**2


@dataclass
class Source:
    """A stage's data: a dataset of batches plus what is known about its length.

    For in-memory arrays, ``tensors`` holds the rows and ``order(epoch)`` the row order of an epoch: a
    stateless shuffle of ``seed`` and the epoch number (saved in checkpoints, so a resumed run sees
    exactly the batches the interrupted one would have). Both ways of feeding arrays, the ``tf.data``
    pipeline of `dataset` and the compiled loop's own slicing, use that order, so they train
    identically.
    """

    batches: tf.data.Dataset | None
    num_batches: int | None  # None: unknown length
    infinite: bool = False
    tensors: object = None
    rows: int = 0
    batch_size: int = 0
    seed: int | None = None
    fetcher: Any = None  # a PyDataset's BatchFetcher: batches read by index (rows: its batch count)
    workers: int = 1
    queue: int = 0
    keep_iterator_state: bool = True  # Trainer(save_input_state=...)
    iterator: Any = None  # a weak reference to the fit's training iterator, while it runs
    resumed_state: bytes | None = None  # the saved iterator state a resumed fit continues from

    @property
    def in_memory(self) -> bool:
        """Arrays small enough to slice inside the compiled loop."""
        if self.tensors is None:
            return False
        size = sum(t.shape.num_elements() * t.dtype.size for t in tf.nest.flatten(self.tensors))
        return size <= IN_MEMORY_MAX_BYTES

    # do_not_convert: plain Python over static shapes that calls no user code; AutoGraph rewriting it
    # only made the first trace of every process slower (docs/performance.md, "First epoch").
    @tf.autograph.experimental.do_not_convert
    def order(self, epoch: Any) -> Any:
        """Row indices of ``epoch`` (a permutation when shuffling), as an int64 tensor."""
        rows = tf.range(self.rows, dtype=tf.int64)
        if self.seed is None:
            return rows
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(epoch, tf.int64)])
        return tf.random.experimental.stateless_shuffle(rows, seed=seed)

    @tf.autograph.experimental.do_not_convert
    def gather(self, indices: Any) -> Any:
        """The rows ``indices`` of every array."""
        return tf.nest.map_structure(lambda t: tf.gather(t, indices), self.tensors)

    def dataset(self, *, limit: int | None = None, repeat: bool = False, skip: int = 0) -> Any:
        """The batched pipeline: the first ``limit`` batches, repeated, minus ``skip`` batches."""
        if self.tensors is not None:
            return self._array_dataset(limit, repeat, skip)
        if self.fetcher is not None:
            return self._fetched_dataset(limit, repeat, skip)
        ds = self.batches
        assert ds is not None  # a Source has arrays (tensors) or a batched pipeline
        if limit is not None:
            ds = ds.take(limit)
        if repeat:
            ds = ds.repeat()
        if skip:
            ds = ds.skip(skip)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _array_dataset(self, limit, repeat, skip):
        per_epoch = min(limit, self.num_batches) if limit is not None else self.num_batches
        first_epoch, skip = divmod(skip, per_epoch) if per_epoch else (0, 0)
        epochs = tf.data.Dataset.range(first_epoch, 2**62 if repeat else first_epoch + 1)
        ds = epochs.flat_map(lambda epoch: tf.data.Dataset.from_tensor_slices(self.order(epoch))
                             .batch(self.batch_size).take(per_epoch))
        if skip:
            ds = ds.skip(skip)
        ds = ds.map(self.gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _fetched_dataset(self, limit, repeat, skip):
        """A PyDataset's batches: each epoch's (shuffled) batch indices, read ``workers`` at a time,
        in order, ``queue`` batches ahead. Skipping to a resumed position reads no batch."""
        per_epoch = min(limit, self.num_batches) if limit is not None else self.num_batches
        first_epoch, skip = divmod(skip, per_epoch) if per_epoch else (0, 0)
        pipeline = self.fetcher.new_pipeline()
        read = self.fetcher.read
        epochs = tf.data.Dataset.range(first_epoch, 2**62 if repeat else first_epoch + 1)
        ds = epochs.flat_map(lambda epoch: tf.data.Dataset.zip(
            tf.data.Dataset.from_tensors(epoch).repeat(per_epoch),
            tf.data.Dataset.from_tensor_slices(self.order(epoch)[:per_epoch]),
            tf.data.Dataset.from_tensors(tf.where(epoch == first_epoch, per_epoch - skip, per_epoch))
            .repeat(per_epoch)))
        if skip:
            ds = ds.skip(skip)
        ds = ds.map(lambda epoch, index, expected: read(pipeline, first_epoch, epoch, index, expected),
                    num_parallel_calls=self.workers, deterministic=True)
        ds = ds.apply(tf.data.experimental.assert_cardinality(
            tf.data.INFINITE_CARDINALITY if repeat else per_epoch - skip)).prefetch(self.queue)
        # tf.data's shared pool has one thread per core; reads that wait (files, network) need more.
        options = tf.data.Options()
        options.threading.private_threadpool_size = max(self.workers, os.cpu_count() or 1)
        return ds.with_options(options)

    @property
    def element_spec(self) -> Any:
        if self.tensors is not None:
            # What `dataset()` yields (rows gathered from the arrays, any batch size), without
            # building that pipeline: tracing its two functions cost each fit 20-30 ms per stage.
            return tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype),
                                         self.tensors)
        return self.dataset().element_spec

    def state_dict(self) -> dict:
        """The shuffle seed (``-1``: not shuffled), for exact resume; the length, for checks; and
        the training iterator's state (position and buffers, as bytes) when it can be saved."""
        state: dict[str, Any] = {"seed": -1 if self.seed is None else self.seed,
                                 "num_batches": -1 if self.num_batches is None else self.num_batches,
                                 "batch_size": self.batch_size}
        # A PyDataset skips by index already (and its reads are Python): nothing to save for it.
        saves = self.iterator is not None and self.keep_iterator_state and self.fetcher is None
        iterator = self.iterator() if saves else None
        buffered = shuffle_buffer_bytes(self.batches) if iterator is not None else 0
        blob = serialize_iterator(iterator) if iterator is not None and buffered <= MAX_INPUT_STATE_BYTES \
            else None
        size = len(blob) if blob is not None else buffered
        if size > MAX_INPUT_STATE_BYTES:  # a .cache() or a shuffle of the whole data
            warnings.warn(f"The training input's iterator state is {size / 2**20:.0f} MiB (a cache "
                          "or a large shuffle buffer in the pipeline): checkpoints leave it out, and a "
                          "resumed fit replays the epoch to its position instead.")
            self.keep_iterator_state, blob = False, None
        if blob is not None:
            state["iterator"] = np.frombuffer(blob, np.uint8)
        return state

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("seed", -1)) >= 0:
            self.seed = int(state["seed"])
        saved = state.get("iterator")
        self.resumed_state = saved.tobytes() if saved is not None and self.keep_iterator_state else None


def serialize_iterator(iterator) -> bytes | None:
    """A ``tf.data`` iterator's state (where it is, what its shuffle and prefetch buffers hold) as
    bytes; ``None`` for iterators TensorFlow cannot save (distributed ones, Python generators)."""
    resource = getattr(iterator, "_iterator_resource", None)  # a plain (single-device) iterator's
    if resource is None:
        return None
    try:
        # external_state_policy=2 (FAIL): a pipeline with state TensorFlow cannot save (a stateful
        # random op, a py_function, a generator) is replayed on resume instead, never half-restored.
        state = tf.raw_ops.SerializeIterator(resource_handle=resource, external_state_policy=2)
        return tf.io.serialize_tensor(state).numpy()
    except (tf.errors.OpError, ValueError):
        return None


def restore_iterator(iterator, blob: bytes) -> bool:
    """Puts ``iterator`` where ``blob`` (from `serialize_iterator`) says; whether it could."""
    resource = getattr(iterator, "_iterator_resource", None)
    if resource is None:
        return False
    try:
        tf.raw_ops.DeserializeIterator(resource_handle=resource, serialized=tf.io.parse_tensor(blob, tf.variant))
    except (tf.errors.OpError, ValueError):  # another pipeline than the one saved
        return False
    return True


def is_generator(data) -> bool:
    """A generator, an iterator, or a function returning one (called once per epoch)."""
    if isinstance(data, (types.GeneratorType, itertools.chain)):
        return True
    if hasattr(data, "__next__"):
        return True
    return callable(data) and not hasattr(data, "shape")


def is_array_data(data) -> bool:
    """Arrays, tuples or dicts of them (data that ``batch_size`` applies to)."""
    return not (isinstance(data, (tf.data.Dataset, keras.utils.PyDataset)) or is_generator(data))


def to_source(data: Any, *, batch_size: int | None, shuffle: bool, name: str) -> Source | None:
    """Turns user data into a `Source`.

    Args:
        data: a batched ``tf.data.Dataset``; arrays ``x``, ``(x, y)``, ``(x, y, sample_weight)`` or
            dicts; a ``keras.utils.PyDataset``; a generator, or a function returning one.
        batch_size: batch size for arrays (default 32); must be ``None`` for already batched data.
        shuffle: reshuffle array rows every epoch (training).
        name: the argument name, for error messages.

    Raises:
        ValueError, TypeError: data that cannot be used, with the argument named.
    """
    if data is None:
        return None
    if batch_size is not None and (isinstance(batch_size, bool)  # NumPy integers are fine
                                   or not isinstance(batch_size, numbers.Integral) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    batch_size = None if batch_size is None else int(batch_size)
    if isinstance(data, tf.data.Dataset):
        _no_batch_size(batch_size, name, "a tf.data.Dataset")
        cardinality = int(data.cardinality())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            return Source(data, None, infinite=True)
        return Source(data, cardinality if cardinality >= 0 else None)
    if isinstance(data, keras.utils.PyDataset):
        _no_batch_size(batch_size, name, "a keras.utils.PyDataset")
        return _from_py_dataset(data, name, shuffle)
    if is_generator(data):
        _no_batch_size(batch_size, name, "a generator")
        return _from_generator(data, name)
    return _from_arrays(data, batch_size or DEFAULT_BATCH_SIZE, shuffle, name)


def _no_batch_size(batch_size, name, kind) -> None:
    if batch_size is not None:
        raise ValueError(
            f"`batch_size` applies to array data only, but {name} is {kind}, which is already batched. "
            f"Batch it yourself and drop batch_size. Received: batch_size={batch_size}"
        )


def _as_array(value, name):
    try:
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} holds a value that is not an array: {type(value).__name__}") from error
    if array.dtype == object:
        array = _as_strings(array, name, value)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(keras.config.floatx(), copy=False)
    return array


def _as_strings(array, name, value):
    """An object array of text (how NumPy holds strings, and what a string tensor's ``numpy()``
    gives) as a string array, which becomes a ``tf.string`` tensor as under Keras's ``fit``.

    Raises:
        TypeError: the objects are not all text (or all bytes); the message names where and what.
    """
    items = array.ravel()
    for kind in (str, bytes):
        if items.size and all(isinstance(item, kind) for item in items):
            return array.astype(kind)
    found = sorted({type(item).__name__ for item in items}) or ["nothing"]
    raise TypeError(
        f"{name} is an array of dtype object holding {', '.join(found)}: only numbers and text "
        "can be fed to a model. Convert it, e.g. np.asarray(values, dtype='float32'), or pass text "
        f"as str. Received: {type(value).__name__} of dtype object")


def _where(name: str, path: tuple) -> str:
    """``train_data['thal']``-style names of one array of a structure, for messages (the keys of
    dicts; positions in tuples are x, y and sample weights, which the message's text names)."""
    return name + "".join(f"[{key!r}]" for key in path if isinstance(key, str))


def _lists_as_tuples(value):
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):  # namedtuples stay
        return tuple(_lists_as_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _lists_as_tuples(item) for key, item in value.items()}
    return value


def _from_arrays(data, batch_size, shuffle, name) -> Source:
    if isinstance(data, list) and all(hasattr(d, "shape") for d in data):
        # up to three arrays are (x, y, sample_weight); more are x alone, several inputs
        data = tuple(data) if len(data) <= 3 else (tuple(data),)
    data = _lists_as_arrays(data, name)
    paths = [path for path, _ in keras.tree.flatten_with_path(data)]  # tf.nest's order
    arrays = tf.nest.pack_sequence_as(data, [_as_array(leaf, _where(name, path))
                                             for leaf, path in zip(tf.nest.flatten(data), paths)])
    leaves = tf.nest.flatten(arrays)
    if not leaves:
        raise ValueError(f"{name} is empty. Received: {data!r}")
    lengths = [len(leaf) if leaf.ndim else 0 for leaf in leaves]
    if len(set(lengths)) != 1:
        raise ValueError(
            f"{name} arrays must all have the same number of rows. Received lengths {lengths} "
            "(in the order x, y, sample_weight)."
        )
    rows = lengths[0]
    if rows == 0:
        raise ValueError(f"{name} has no rows. Received arrays of shapes {[a.shape for a in leaves]}.")
    # Several inputs as a list arrive as a tuple, as in Keras's fit (a tf.data function returning a
    # list would stack it into one tensor, which fails for inputs of different shapes).
    tensors = _lists_as_tuples(tf.nest.map_structure(tf.convert_to_tensor, arrays))
    # A seed drawn from NumPy's global generator: reproducible under kt.seed_everything; each epoch's
    # order derives from it and the epoch number, and it is stored in checkpoints for exact resume.
    seed = int(np.random.randint(0, 2**31 - 1)) if shuffle else None

    return Source(None, -(-rows // batch_size), tensors=tensors, rows=rows, batch_size=batch_size,
                  seed=seed)


def _is_rows(value) -> bool:
    """A Python list of numbers or of such lists (rows), not a list of arrays (several inputs)."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, numbers.Number) or _is_rows(item) for item in value)


def _lists_as_arrays(data, name):
    """``x``, ``y`` and ``sample_weight`` given as Python lists of rows become arrays (``tf.nest``
    would take each number for an input of its own).

    Raises:
        ValueError: the rows have different lengths (ragged data).
    """
    def convert(part, which):
        if not _is_rows(part):
            return part
        try:
            return np.asarray(part)
        except ValueError as error:  # NumPy refuses inhomogeneous rows
            lengths = sorted({len(row) for row in part if isinstance(row, list)})
            raise ValueError(
                f"{name}: {which} is a list of rows of different lengths ({lengths} items), which "
                "cannot form an array. Pad the rows to one length (keras.utils.pad_sequences) or "
                "pass a tf.data pipeline of tf.ragged.constant(rows).") from error

    if isinstance(data, tuple):
        names = ("x", "y", "sample_weight")
        return tuple(convert(part, names[i] if i < len(names) else f"element {i}")
                     for i, part in enumerate(data))
    if isinstance(data, dict):
        return {key: convert(value, f"x[{key!r}]") for key, value in data.items()}
    return convert(data, "x")


def _leaf_spec(value):
    array = np.asarray(value)
    dtype = keras.config.floatx() if np.issubdtype(array.dtype, np.floating) else array.dtype
    return tf.TensorSpec(shape=(None,) + array.shape[1:], dtype=tf.as_dtype(dtype))


def _normalize(element):
    if isinstance(element, list):
        element = tuple(element)
    return tf.nest.map_structure(lambda v: _as_array(v, "a generated batch"), element)


def _from_generator(data, name) -> Source:
    if callable(data) and not hasattr(data, "__next__"):
        first = next(iter(data()), None)
        make = data
    else:
        iterator = iter(data)
        first = next(iterator, None)
        chained = itertools.chain([] if first is None else [first], iterator)

        def make():
            return chained

    if first is None:
        raise ValueError(f"{name} is a generator that yielded nothing.")
    spec = tf.nest.map_structure(_leaf_spec, _normalize(first))

    def generate():
        for element in make():
            yield _normalize(element)

    return Source(tf.data.Dataset.from_generator(generate, output_signature=spec), None)


def _from_py_dataset(data, name, shuffle) -> Source:
    length = data.num_batches if hasattr(data, "num_batches") else len(data)
    if length is None:  # an endless PyDataset: read in order, one batch at a time
        return _endless_py_dataset(data)
    if length == 0:
        raise ValueError(f"{name} is a keras.utils.PyDataset with no batches (len() == 0).")
    spec = tf.nest.map_structure(_leaf_spec, _normalize(data[0]))
    workers = max(1, int(getattr(data, "workers", 1) or 1))
    if getattr(data, "use_multiprocessing", False):
        warnings.warn(f"{name} is a PyDataset with use_multiprocessing=True: kerastrainer reads it with "
                      f"{workers} threads instead of processes (a __getitem__ that holds the GIL gains "
                      "nothing from them; move such work into tf.data or NumPy).", stacklevel=4)
    # Keras's fit shuffles a PyDataset's batch order every epoch (its shuffle=True): the same seeded,
    # per-epoch order as array rows, so a resumed run continues it exactly.
    seed = int(np.random.randint(0, 2**31 - 1)) if shuffle else None
    return Source(None, length, rows=length, seed=seed, fetcher=BatchFetcher(data, spec, _normalize),
                  workers=workers, queue=max(1, int(getattr(data, "max_queue_size", 10) or 10)))


def _endless_py_dataset(data) -> Source:
    spec = tf.nest.map_structure(_leaf_spec, _normalize(data[0]))

    def generate():
        for index in itertools.count():
            yield _normalize(data[index])

    return Source(tf.data.Dataset.from_generator(generate, output_signature=spec), None, infinite=True)

