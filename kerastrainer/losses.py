"""How a user's loss becomes the scalar a step differentiates, as Keras's ``compile`` makes it.

Per-example losses are weighted by the batch's sample weights (``(n,)`` and ``(n, 1)`` alike, as
Keras treats them) and averaged over the batch; the module's regularization losses
(``kernel_regularizer``, ``activity_regularizer``, ``add_loss``: ``module.losses``) are added.
"""

from __future__ import annotations

import warnings

import tensorflow as tf


def weighted_mean(value, sample_weight, where: str):
    """The mean over the batch of the per-example losses ``value`` weighted by ``sample_weight``.

    Weights of shape ``(n,)`` and ``(n, 1)`` both weigh example ``i`` by ``w[i]`` (Keras's rule:
    a trailing 1 is squeezed, a missing axis added), whatever the rank of ``value``.

    Raises:
        ValueError: ``value`` is a scalar, or the weights' shape fits no per-example weighting.
    """
    if value.shape.rank == 0:
        raise ValueError(
            f"{where}: the batch has sample weights but loss(y_true, y_pred) returned a scalar, so "
            "they cannot be applied. Return per-example losses, or accept a third argument: "
            "loss(self, y_true, y_pred, sample_weight).")
    weight = tf.cast(sample_weight, value.dtype)
    while weight.shape.rank > value.shape.rank and weight.shape[-1] == 1:
        weight = tf.squeeze(weight, -1)  # (n, 1) weights on (n,) losses
    while weight.shape.rank < value.shape.rank:
        weight = tf.expand_dims(weight, -1)  # (n,) weights on (n, k) losses
    fits = weight.shape.rank == value.shape.rank and all(
        w is None or v is None or w in (1, v) for w, v in zip(weight.shape, value.shape))
    if not fits:
        raise ValueError(
            f"{where}: sample weights of shape {tuple(sample_weight.shape)} do not fit per-example "
            f"losses of shape {tuple(value.shape)}. Give one weight per example, shape (n,) or "
            "(n, 1).")
    return tf.reduce_mean(value * weight)


def scalar_loss(loss, where: str):
    """``loss`` as a scalar: a loss with more elements is averaged, with a warning (when the step is
    traced; Python shows it once), so that the gradient is the one of the mean that is logged, not
    of the sum."""
    loss = tf.convert_to_tensor(loss)
    if loss.shape.rank == 0:
        return loss
    if loss.shape.rank is not None:
        warnings.warn(
            f"{where} returned a loss of shape {tuple(loss.shape)}, not a scalar; it is reduced to its "
            "mean. Return a scalar (e.g. keras.ops.mean(loss)) to silence this.", stacklevel=2)
    return tf.reduce_mean(loss)


def with_regularization(loss, module):
    """``loss`` plus the sum of ``module.losses`` (weight and activity regularizers, ``add_loss``)
    of the call just made, as Keras's ``compute_loss`` adds them in training and evaluation."""
    extra = module.losses
    if not extra:
        return loss
    extra = [tf.reduce_sum(tf.cast(term, loss.dtype)) for term in extra]
    return loss + tf.add_n(extra)
