"""Checks of class-index targets that the loss itself may not make, counted inside the step.

Targets of shape ``(n,)`` (or ``(n, 1)``) against predictions of shape ``(n, C)`` are class
indices. Outside XLA, TensorFlow's sparse cross-entropy raises on a label outside ``[0, C)``; under
XLA it does not check and the weights silently become NaN, and float labels such as ``1.7`` are
truncated to a class by every sparse loss. The step counts such targets in device variables (two
reductions over the labels, no host read); the trainer reads the counts once per epoch and per
evaluation run, where it reads the host anyway, and refuses out-of-range labels or warns about
fractional ones.

Predictions of shape ``(n, 1)`` against targets ``(n, k)`` broadcast to an ``(n, k)`` loss under
Keras's ``fit`` and here alike; that is said once, when the step is traced.
"""

from __future__ import annotations

import warnings

import tensorflow as tf

#: What a step counts, by name: labels outside [0, C), and labels that are not whole numbers.
OUT_OF_RANGE = "labels_out_of_range"
NOT_INTEGRAL = "labels_not_integral"
#: Both, in the order the trainer reads them.
LABEL_COUNTS = (OUT_OF_RANGE, NOT_INTEGRAL)


# do_not_convert: plain Python over static shapes; AutoGraph converting these at the first trace
# cost some 0.1 s a process (docs/performance.md, "First epoch").
@tf.autograph.experimental.do_not_convert
def sparse_classes(y_true, y_pred) -> int | None:
    """The number of classes ``C`` when ``y_true`` holds class indices for ``y_pred``: ranks that
    differ by the predictions' class axis (``(n,)`` or ``(n, 1)`` targets, ``(n, C)`` predictions,
    ``C > 1`` known when traced); ``None`` otherwise.

    Example:
        >>> import tensorflow as tf
        >>> sparse_classes(tf.zeros([4], tf.int32), tf.zeros([4, 3]))
        3
        >>> sparse_classes(tf.zeros([4, 3]), tf.zeros([4, 3])) is None
        True
    """
    if not (tf.is_tensor(y_true) and tf.is_tensor(y_pred)):
        return None
    true_rank, pred_rank = y_true.shape.rank, y_pred.shape.rank
    if true_rank is None or pred_rank is None or pred_rank < 2:
        return None
    classes = y_pred.shape[-1]
    if classes is None or classes < 2:
        return None
    if true_rank == pred_rank - 1 or (true_rank == pred_rank and y_true.shape[-1] == 1):
        return int(classes)
    return None


@tf.autograph.experimental.do_not_convert
def count_label_problems(recording, y_true, y_pred) -> None:
    """Adds the batch's out-of-range and fractional class labels to ``recording``'s counts (per
    output for structured targets); nothing for targets that are not class indices."""
    try:
        pairs = list(zip(tf.nest.flatten(y_true), tf.nest.flatten(y_pred)))
        tf.nest.assert_same_structure(y_true, y_pred)
    except (TypeError, ValueError):
        return
    for labels, predictions in pairs:
        classes = sparse_classes(labels, predictions)
        if classes is None:
            continue
        dtype = tf.as_dtype(labels.dtype)
        if not (dtype.is_integer or dtype.is_floating):
            continue
        values = tf.cast(labels, tf.float64)
        outside = tf.logical_or(values < 0, values >= classes)
        recording.count(OUT_OF_RANGE, tf.reduce_sum(tf.cast(outside, tf.float32)), classes=classes)
        if dtype.is_floating:
            fractional = tf.not_equal(values, tf.round(values))
            recording.count(NOT_INTEGRAL, tf.reduce_sum(tf.cast(fractional, tf.float32)),
                            classes=classes)


@tf.autograph.experimental.do_not_convert
def warn_if_broadcast(y_true, y_pred, where: str) -> None:
    """Warns (once per trace) when predictions with a trailing axis of 1 meet targets with a longer
    one: the loss broadcasts them to the targets' shape, as Keras's ``fit`` does without a word."""
    if not (tf.is_tensor(y_true) and tf.is_tensor(y_pred)):
        return
    if y_true.shape.rank is None or y_true.shape.rank != y_pred.shape.rank or y_true.shape.rank < 2:
        return
    width, units = y_true.shape[-1], y_pred.shape[-1]
    if units == 1 and width is not None and width > 1:
        warnings.warn(
            f"{where}: targets of shape {tuple(y_true.shape)} are compared with predictions of shape "
            f"{tuple(y_pred.shape)}, so the loss broadcasts each prediction against {width} "
            f"targets. Give the last layer {width} units, or pass targets of shape (n, 1).",
            stacklevel=3)


def label_problem(counts: dict, data_name: str) -> tuple | None:
    """What the trainer says about ``counts`` (`StepRecorder.take_counts`) of one stage:
    ``("error", message)`` for out-of-range labels, ``("warning", message)`` for fractional ones,
    or ``None``."""
    outside, classes = counts.get(OUT_OF_RANGE, (0, None))
    if outside:
        return "error", (
            f"{data_name} has {int(outside)} class labels outside [0, {classes}): the predictions "
            f"have {classes} classes (their last axis), so labels must be 0 to {classes - 1}. Give "
            f"the last layer as many units as there are classes, or fix the labels. (Under XLA the "
            f"loss does not check them and the weights become NaN.) Received: labels outside "
            f"[0, {classes}) in {int(outside)} targets")
    fractional, classes = counts.get(NOT_INTEGRAL, (0, None))
    if fractional:
        return "warning", (
            f"{data_name} has {int(fractional)} class labels that are not whole numbers (targets of "
            f"one value per example against {classes} predicted classes): a sparse loss truncates "
            "them to a class (1.7 trains as class 1). Pass integer class indices, or one-hot targets "
            f"of shape (n, {classes}) with a non-sparse loss.")
    return None
