"""How much a ``tf.data`` pipeline's shuffle buffers hold, known before its iterator is saved.

A checkpoint leaves out an iterator state over ``sources.MAX_INPUT_STATE_BYTES``. Finding that by
serializing it costs seconds for a ``shuffle(len(x))`` of a whole dataset, the course notes'
shuffle; estimating the buffers from the pipeline first costs nothing.
"""

from __future__ import annotations

import tensorflow as tf


def _element_bytes(spec) -> int:
    """Bytes of one element of ``spec`` (unknown dimensions count as 1: a lower bound)."""
    total = 0
    for part in tf.nest.flatten(spec):
        shape = getattr(part, "shape", None)
        dtype = getattr(part, "dtype", None)
        if shape is None or dtype is None or shape.rank is None or dtype == tf.string:
            continue
        count = 1
        for dim in shape:
            count *= dim if dim is not None else 1
        total += count * dtype.size
    return total


def shuffle_buffer_bytes(dataset) -> int:
    """A lower bound of the bytes the shuffle buffers of ``dataset`` hold once filled: each buffer's
    size (at most its input's length) times its element's bytes; 0 for pipelines it cannot walk."""
    total = 0
    seen = set()
    pending = [dataset]
    while pending:
        ds = pending.pop()
        if id(ds) in seen or not isinstance(ds, tf.data.Dataset):
            continue
        seen.add(id(ds))
        # tf.data's Python datasets keep their inputs as these attributes (no public accessor)
        inputs = [getattr(ds, "_input_dataset", None), *tf.nest.flatten(getattr(ds, "_datasets", ()))]
        pending += [i for i in inputs if i is not None]
        source = inputs[0]
        if "Shuffle" in type(ds).__name__ and source is not None and hasattr(ds, "_buffer_size"):
            try:
                size = int(ds._buffer_size)
                rows = int(source.cardinality())
            except (TypeError, ValueError, tf.errors.OpError):
                continue
            size = min(size, rows) if rows >= 0 else size
            total += max(size, 0) * _element_bytes(source.element_spec)
    return total
