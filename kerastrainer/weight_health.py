"""The epoch-end check that the trainable weights are still finite.

A NaN in one input row makes every weight it reaches NaN after one step, while the reported loss
can stay finite: Keras's probability losses clip their inputs, and TensorFlow's clip (outside XLA)
maps NaN to the clip bound, so ``loss`` reads ``0.693`` under ``Model.fit`` and here alike. The
trainer reads the weights' finiteness once per epoch (a few reductions, at a point that reads the
host anyway) and says so, instead of training on NaN without a word.
"""

from __future__ import annotations

import tensorflow as tf


def first_nonfinite(variables) -> str | None:
    """The path of the first variable of ``variables`` holding a NaN or an infinity, else ``None``.

    Example:
        >>> import keras, numpy as np
        >>> first_nonfinite([keras.Variable([1.0], name="a"), keras.Variable([np.nan], name="b")])
        'b'
    """
    floating = [variable for variable in variables if tf.as_dtype(variable.dtype).is_floating]
    if not floating:
        return None
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(variable)) for variable in floating])
    flags = finite.numpy()  # one host read for all of them
    for variable, ok in zip(floating, flags):
        if not ok:
            return getattr(variable, "path", variable.name)
    return None


def nonfinite_message(path: str, epoch: int, loss: float | None) -> str:
    """The warning for weights that stopped being finite in ``epoch``."""
    reported = "" if loss is None else f" while the reported loss is {loss:.4g}"
    return (
        f"The trainable weights are not finite after epoch {epoch} (first: {path}){reported}: every "
        "later step trains on NaN. A NaN or infinity in the input data or the targets, or a "
        "learning rate too high, does this; Keras's probability losses clip NaN predictions, so "
        "the loss can look finite. Stop at the first such step with Trainer(detect_anomaly=True) "
        "or kerastrainer.callbacks.TerminateOnNaN(), and check the data with np.isfinite.")
