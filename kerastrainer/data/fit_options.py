"""Keras ``fit`` arguments for a fit's data: ``validation_split`` and ``class_weight``."""

from __future__ import annotations

import math
import numbers

import numpy as np
import tensorflow as tf

from kerastrainer.data.sources import is_array_data


def split_validation(train_data, val_data, datamodule, split):
    """``(train_data, val_data)`` after Keras's ``validation_split``: the last ``split`` of the
    rows validate, taken before any shuffling.

    Raises:
        ValueError: a split outside (0, 1), data that is not arrays, or ``val_data`` as well.
    """
    if split is None:
        return train_data, val_data
    if isinstance(split, bool) or not isinstance(split, numbers.Real) or not 0 < split < 1:
        raise ValueError(f"`validation_split` must be a fraction in (0, 1). Received: "
                         f"validation_split={split!r}")
    if val_data is not None or datamodule is not None:
        raise ValueError("Pass either val_data (or a datamodule) or validation_split, not both. "
                         f"Received: validation_split={split}")
    if not is_array_data(train_data):
        raise ValueError(
            "`validation_split` applies to array data (as in Keras): split a dataset, PyDataset or "
            f"generator yourself and pass val_data. Received: train_data of type "
            f"{type(train_data).__name__}")
    arrays = tf.nest.map_structure(np.asarray, tuple(train_data) if isinstance(train_data, list)
                                   else train_data)
    rows = len(tf.nest.flatten(arrays)[0])
    cut = int(math.ceil(rows * (1.0 - split)))  # Keras's rounding
    if not 0 < cut < rows:
        raise ValueError(f"`validation_split`={split} of {rows} rows leaves no rows for training or "
                         f"for validation. Received: validation_split={split}")
    return (tf.nest.map_structure(lambda a: a[:cut], arrays),
            tf.nest.map_structure(lambda a: a[cut:], arrays))


def apply_class_weight(source, class_weight, name: str):
    """Weighs every training example by its class (times its own sample weight), as Keras's
    ``class_weight`` does; labels are integers, or one-hot rows (their argmax).

    Raises:
        TypeError, ValueError: a class_weight that is no ``{class: weight}`` dict, batches without
            single targets, or a label with no weight.
    """
    if class_weight is None:
        return source
    if not isinstance(class_weight, dict) or not class_weight or not all(
            isinstance(k, numbers.Integral) and int(k) >= 0 and isinstance(v, numbers.Real)
            for k, v in class_weight.items()):
        raise TypeError("`class_weight` must be a dict mapping class indices (ints >= 0) to "
                        f"weights, e.g. {{0: 1.0, 1: 5.0}}. Received: class_weight={class_weight!r}")
    table = tf.constant([float(class_weight.get(c, 1.0)) for c in range(max(class_weight) + 1)])

    def weigh(*batch):
        if len(batch) == 1 and isinstance(batch[0], tuple):
            batch = batch[0]
        if len(batch) not in (2, 3) or not tf.is_tensor(batch[1]):
            raise ValueError(f"`class_weight` needs {name} as (x, y) or (x, y, sample_weight) with "
                             "one target tensor (as Keras's; not for several outputs).")
        y = batch[1]
        labels = tf.argmax(y, -1) if y.shape.rank == 2 and y.shape[-1] != 1 else tf.reshape(y, [-1])
        weight = tf.gather(table, tf.cast(labels, tf.int32))
        if len(batch) == 3:
            weight = weight * tf.reshape(tf.cast(batch[2], weight.dtype), [-1])
        return batch[0], y, weight

    if source.tensors is not None:  # arrays: checked on the host, weighted once
        labels = source.tensors[1] if isinstance(source.tensors, tuple) else None
        if labels is not None and int(tf.reduce_max(tf.cast(
                tf.argmax(labels, -1) if labels.shape.rank == 2 and labels.shape[-1] != 1
                else tf.reshape(labels, [-1]), tf.int64))) >= len(table):
            raise ValueError(f"`class_weight` has no weight for some classes of {name} (they go up "
                             f"to class {len(table)} or more). Received: class_weight={class_weight!r}")
        source.tensors = weigh(source.tensors)
    else:
        source.batches = source.batches.map(weigh)
    return source
