"""How a user's loss becomes the scalar a step differentiates, as Keras's ``compile`` makes it.

Per-example losses are weighted by the batch's sample weights (``(n,)`` and ``(n, 1)`` alike, as
Keras treats them) and averaged over the batch; the module's regularization losses
(``kernel_regularizer``, ``activity_regularizer``, ``add_loss``: ``module.losses``) are added.
"""

from __future__ import annotations

import inspect
import warnings

import tensorflow as tf

from kerastrainer import label_checks, recorder
from kerastrainer.refusals import refusal


def step_loss(module, loss_fn, y_true, y_pred, sample_weight, *, where: str):
    """What ``TrainModule.compute_step_loss`` computes: ``loss_fn`` (the module's ``loss``) on
    same-rank targets and predictions, weighted, averaged, plus ``module.losses``.

    Raises:
        ValueError: no targets, a loss Keras cannot compute for these shapes, or sample weights
            that do not fit the losses.
    """
    step = where.rsplit(".", 1)[-1]
    if y_true is None:
        raise refusal(ValueError(
            f"{where}: the batch has no targets, so loss(y_true, y_pred) cannot be computed. Give "
            f"the data as (x, y) or (x, y, sample_weight), or override {step}."))
    takes_weight = len(inspect.signature(loss_fn).parameters) >= 4  # self, y_true, y_pred, sw
    # Under mixed precision the model computes in float16/bfloat16; the loss is float32.
    y_pred = tf.nest.map_structure(
        lambda t: tf.cast(t, tf.float32) if t.dtype in (tf.float16, tf.bfloat16) else t, y_pred)
    recording = recorder.active()
    if recording is not None:  # inside a compiled step: count what the loss may not check
        label_checks.count_label_problems(recording, y_true, y_pred)
    y_true, y_pred = same_rank(y_true, y_pred)
    label_checks.warn_if_broadcast(y_true, y_pred, where)
    try:
        if sample_weight is not None and takes_weight:
            value = loss_fn(module, y_true, y_pred, sample_weight)
        else:
            value = loss_fn(module, y_true, y_pred)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        raise refusal(ValueError(
            f"{where}: loss(y_true, y_pred) failed for y_true of shape "
            f"{tuple(getattr(y_true, 'shape', ()))} and y_pred of shape "
            f"{tuple(getattr(y_pred, 'shape', ()))}. Check that the model's output matches the "
            f"targets (units of the last layer, sparse vs one-hot labels). Keras said: {error}"
        )) from error
    if value is None:
        raise refusal(TypeError(
            f"{where}: loss(y_true, y_pred) returned None. Return the per-example losses or their "
            "mean as a tensor, e.g. `return keras.losses.mean_squared_error(y_true, y_pred)` (a "
            "missing `return`?)."))
    value = tf.convert_to_tensor(value)
    if sample_weight is not None and not takes_weight:
        value = weighted_mean(value, sample_weight, where)
    elif value.shape.rank != 0:
        value = tf.reduce_mean(value)
    return with_regularization(value, module)


# do_not_convert: plain Python over static shapes that calls no user code; AutoGraph rewriting it
# only made the first trace of every process slower (docs/performance.md, "First epoch").
@tf.autograph.experimental.do_not_convert
def same_rank(y_true, y_pred):
    """``(y_true, y_pred)`` made the same rank where they differ by a trailing axis of 1, as Keras's
    ``compile`` does before calling a loss: ``(n,)`` targets and ``(n, 1)`` predictions become
    ``(n, 1)`` both, instead of broadcasting to ``(n, n)``. Structures are left as they are."""
    if not (tf.is_tensor(y_true) and tf.is_tensor(y_pred)) or None in (y_true.shape.rank,
                                                                        y_pred.shape.rank):
        return y_true, y_pred
    if y_pred.shape.rank == y_true.shape.rank + 1 and y_pred.shape[-1] == 1:
        if y_true.shape.rank == 1:
            return tf.expand_dims(y_true, -1), y_pred
        return y_true, tf.squeeze(y_pred, -1)
    if y_true.shape.rank == y_pred.shape.rank + 1 and y_true.shape[-1] == 1:
        if y_pred.shape.rank == 1:
            return y_true, tf.expand_dims(y_pred, -1)
        return tf.squeeze(y_true, -1), y_pred
    return y_true, y_pred


@tf.autograph.experimental.do_not_convert
def weighted_mean(value, sample_weight, where: str):
    """The mean over the batch of the per-example losses ``value`` weighted by ``sample_weight``.

    Weights of shape ``(n,)`` and ``(n, 1)`` both weigh example ``i`` by ``w[i]`` (Keras's rule:
    a trailing 1 is squeezed, a missing axis added), whatever the rank of ``value``.

    Raises:
        ValueError: ``value`` is a scalar, or the weights' shape fits no per-example weighting.
    """
    if value.shape.rank == 0:
        raise refusal(ValueError(
            f"{where}: the batch has sample weights but loss(y_true, y_pred) returned a scalar, so "
            "they cannot be applied. Return per-example losses, or accept a third argument: "
            "loss(self, y_true, y_pred, sample_weight)."))
    weight = tf.cast(sample_weight, value.dtype)
    while weight.shape.rank > value.shape.rank and weight.shape[-1] == 1:
        weight = tf.squeeze(weight, -1)  # (n, 1) weights on (n,) losses
    while weight.shape.rank < value.shape.rank:
        weight = tf.expand_dims(weight, -1)  # (n,) weights on (n, k) losses
    fits = weight.shape.rank == value.shape.rank and all(
        w is None or v is None or w in (1, v) for w, v in zip(weight.shape, value.shape))
    if not fits:
        raise refusal(ValueError(
            f"{where}: sample weights of shape {tuple(sample_weight.shape)} do not fit per-example "
            f"losses of shape {tuple(value.shape)}. Give one weight per example, shape (n,) or "
            "(n, 1)."))
    return tf.reduce_mean(value * weight)


@tf.autograph.experimental.do_not_convert
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


@tf.autograph.experimental.do_not_convert
def added_loss(module, no_loss_message: str):
    """The loss of a module that has no loss function: the sum of ``module.losses`` of the call
    just made (``add_loss`` terms, regularizers), as Keras's ``compute_loss`` sums them when
    ``compile`` got no loss; sample weights do not apply to them there either.

    Raises:
        NotImplementedError: the call added no loss either (``no_loss_message`` says what to add).
    """
    extra = module.losses
    if not extra:
        raise refusal(NotImplementedError(no_loss_message))
    return tf.add_n([tf.reduce_sum(tf.cast(term, tf.float32)) for term in extra])


@tf.autograph.experimental.do_not_convert
def with_regularization(loss, module):
    """``loss`` plus the sum of ``module.losses`` (weight and activity regularizers, ``add_loss``)
    of the call just made, as Keras's ``compute_loss`` adds them in training and evaluation."""
    extra = module.losses
    if not extra:
        return loss
    extra = [tf.reduce_sum(tf.cast(term, loss.dtype)) for term in extra]
    return loss + tf.add_n(extra)


@tf.autograph.experimental.do_not_convert
def check_gradients(gradients, variables, module, where: str) -> bool:
    """Whether a step has gradients to apply (checked once, when the step is traced).

    A module whose every layer is frozen gets a warning and no update, as under Keras's ``fit``.

    Raises:
        ValueError: the module has no variables at all (the step never called the model), or every
            gradient is ``None``: the loss is a constant (a Python number, a tensor made without
            the predictions), so the optimizer would have nothing to apply.
    """
    if not variables:
        if not module.weights:
            raise refusal(ValueError(
                f"{where}: the module has no variables, so there is nothing to train: the step "
                "never calls the model (a loss returned without using self(x)?). Compute the loss "
                "from the model's predictions."))
        warnings.warn(f"{where}: the module has no trainable variables (every layer is frozen), "
                      "so the step updates nothing. Unfreeze a layer to train it.", stacklevel=2)
        return False
    if all(gradient is None for gradient in gradients):
        raise refusal(ValueError(
            f"{where}: the loss does not depend on any trainable variable of the module, so there "
            "is nothing to train (a loss that returns a Python number or a constant does this). "
            "Compute it from the predictions, e.g. "
            "keras.losses.mean_squared_error(y_true, y_pred)."))
    return True
