"""Bringing many small device values to the host in one transfer.

A logging point reads a stage's running loss, its metrics and every ``self.log`` accumulator. Read
one by one, each is an eager op and a device-to-host copy (on a GPU, a synchronisation each). A
`FlatReader` reads them all with one compiled call that packs them into a single float64 vector,
and unpacks that vector on the host.
"""

from __future__ import annotations

from typing import Callable

#: Reads of a stage made plainly (one transfer per value) before it gets a compiled `FlatReader`:
#: tracing one costs more than a few plain reads, so short runs never make one.
PLAIN_READS = 8

import tensorflow as tf


class FlatReader:
    """Reads the nest of tensors ``make()`` returns with one compiled call and one transfer.

    Args:
        make: builds the tensors (called while tracing; variables it reads are read at each call).
        compile_fn: the run's compile site (``CompiledSteps.compile_reader``: ``tf.function``, or
            the plain function under ``run_eagerly``).

    Example:
        >>> reader = FlatReader(lambda: [v.read_value(), {"a": w.read_value()}], tf.function)  # doctest: +SKIP
        >>> reader()  # [np.float32(...), {"a": np.array([...], dtype=float32)}]  # doctest: +SKIP
    """

    def __init__(self, make: Callable, compile_fn: Callable) -> None:
        self._make = make
        self._layout: list = []  # per tensor: (start, end, shape, NumPy dtype), recorded while tracing
        self._structure = None
        self._fn = compile_fn(self._packed)
        self._call = None  # the traced function itself: calling it skips tf.function's dispatch

    def _packed(self):
        tree = self._make()
        parts = [tf.convert_to_tensor(p) for p in tf.nest.flatten(tree)]
        self._structure = tree
        self._layout, start = [], 0
        for part in parts:
            if not part.shape.is_fully_defined():
                raise ValueError(f"FlatReader reads tensors of known shapes only. Received: {part}")
            size = part.shape.num_elements()
            self._layout.append((start, start + size, tuple(part.shape), part.dtype.as_numpy_dtype))
            start += size
        if not parts:
            return tf.zeros([0], tf.float64)
        # float64 holds every float32 and every integer below 2**53 exactly
        return tf.concat([tf.reshape(tf.cast(p, tf.float64), [-1]) for p in parts], axis=0)

    def __call__(self):
        """The nest's values as NumPy arrays of their own dtypes (one device-to-host copy)."""
        if self._call is None:
            get = getattr(self._fn, "get_concrete_function", None)
            self._call = get() if get is not None else self._fn
        vector = self._call().numpy()
        leaves = iter([vector[a].astype(dtype) if not shape else vector[a:b].reshape(shape).astype(dtype)
                       for a, b, shape, dtype in self._layout])
        return _rebuild(self._structure, leaves)


def _rebuild(structure, leaves):
    """``structure`` with its leaves taken from ``leaves`` in ``tf.nest.flatten``'s order (dict keys
    sorted); as ``tf.nest.pack_sequence_as``, for the lists, tuples and dicts a reader holds, at a
    fraction of its cost."""
    if isinstance(structure, dict):
        rebuilt = {key: _rebuild(structure[key], leaves) for key in sorted(structure)}
        return {key: rebuilt[key] for key in structure}
    if isinstance(structure, (list, tuple)):
        items = [_rebuild(item, leaves) for item in structure]
        return type(structure)(*items) if hasattr(structure, "_fields") else type(structure)(items)
    return next(leaves)


class StageReaders:
    """How `Results` reads each stage: plainly for its first `PLAIN_READS` reads, then through one
    compiled `FlatReader` per layout (a stage that logs a new name gets a new one).

    Args:
        compile_reader: the compile site's ``CompiledSteps.compile_reader``; ``None``: always plainly
            (``run_eagerly``, several replicas or workers, whose values are combined one by one).
    """

    def __init__(self, compile_reader: Callable | None) -> None:
        self.compile_reader = compile_reader
        self._readers: dict = {}  # per layout: its FlatReader, the plain reads so far, or -1: never

    @property
    def compiled(self) -> int:
        """How many layouts are read through a compiled reader so far."""
        return sum(isinstance(reader, FlatReader) for reader in self._readers.values())

    def read(self, state) -> dict | None:
        """The values of ``state`` (an ``accumulators.StageState``) through its compiled reader, or
        ``None``: read it plainly."""
        if self.compile_reader is None:
            return None
        key = (state.stage.name, state.has_loss, tuple(state.entries))
        found = self._readers.get(key, 0)
        if found == -1:
            return None
        if isinstance(found, int):
            if found < PLAIN_READS:
                self._readers[key] = found + 1
                return None
            found = self._readers[key] = FlatReader(state.device_values, self.compile_reader)
        try:
            return state.values_from(*found())
        except (TypeError, ValueError):  # a metric result that cannot be packed: plainly from now on
            self._readers[key] = -1
            return None
