"""What Keras's ``compile`` takes, resolved for a Trainer: losses, metrics and optimizers given by
name, as objects, or per output; and their serialization into plain hyperparameters."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerastrainer import losses

#: What ``"accuracy"`` means for each loss, as ``compile`` resolves it.
_ACCURACY_FOR = {
    "sparse_categorical_crossentropy": keras.metrics.SparseCategoricalAccuracy,
    "categorical_crossentropy": keras.metrics.CategoricalAccuracy,
    "binary_crossentropy": keras.metrics.BinaryAccuracy,
}


def _is_config(value) -> bool:
    return isinstance(value, dict) and {"class_name", "config"} <= set(value)


def serialized(value):
    """A compile argument as JSON data (a name, or Keras's serialization of an object), so that a
    checkpoint's hyperparameters rebuild it; dicts and lists are serialized item by item."""
    if value is None or isinstance(value, (str, int, float, bool)) or _is_config(value):
        return value
    if isinstance(value, dict):
        return {key: serialized(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [serialized(item) for item in value]
    return keras.saving.serialize_keras_object(value)


def deserialized_model(model):
    """The ``keras.Model`` itself, or rebuilt from its serialization."""
    return model if isinstance(model, keras.Model) else keras.saving.deserialize_keras_object(model)


def output_names(model) -> list | None:
    """The names of a model's outputs when it has several (``None`` for one)."""
    outputs = getattr(model, "outputs", None) or []
    return list(model.output_names) if len(outputs) > 1 else None


def per_output(value, keys, what: str, *, by_position: bool = True) -> dict:
    """``{output: item}`` (``{None: value}`` for one output) from one item for every output, a
    dict by output name, or (``by_position``) a list in output order.

    Raises:
        ValueError: a dict naming outputs the model does not have.
    """
    if keys is None:
        return {None: value}
    if isinstance(value, dict) and not _is_config(value):
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise ValueError(f"from_keras: `{what}` names outputs {unknown}, but the model's outputs "
                             f"are {keys}.")
        return dict(value)
    if isinstance(value, (list, tuple)) and by_position:
        return dict(zip(keys, value))
    return {key: value for key in keys}


def per_example_loss(loss):
    """``f(y_true, y_pred)`` giving one loss per example, from what ``compile`` takes as a loss.

    Raises:
        TypeError: not a loss.
    """
    if isinstance(loss, (str, dict)):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):  # a Loss object reduces the batch; its call() does not
        return loss.call
    if not callable(loss):
        raise TypeError(f"from_keras: `loss` must be a loss name, a keras.losses.Loss or a function "
                        f"(or a dict or list of them by output). Received: {loss!r}")
    return loss


def output_loss(fn, y_true, y_pred):
    """One output's per-example loss, on same-rank targets, averaged over any further axes."""
    value = tf.convert_to_tensor(fn(*losses.same_rank(tf.convert_to_tensor(y_true),
                                                      tf.convert_to_tensor(y_pred))))
    if value.shape.rank and value.shape.rank > 1:
        value = tf.reduce_mean(value, axis=list(range(1, value.shape.rank)))
    return value


def make_metric(spec, loss):
    """A metric object from a name or object; ``"accuracy"`` resolved for ``loss`` as
    ``compile`` resolves it (sparse, categorical or binary accuracy)."""
    if isinstance(spec, str) and spec in ("accuracy", "acc"):
        fn = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
        name = getattr(fn, "name", None) or getattr(fn, "__name__", "")
        return _ACCURACY_FOR.get(name, keras.metrics.Accuracy)(name=spec)
    metric = keras.metrics.get(spec) if isinstance(spec, (str, dict)) else spec
    if isinstance(metric, type):
        metric = metric()
    if isinstance(spec, str) and isinstance(metric, keras.metrics.Metric) and metric.name != spec:
        metric = type(metric).from_config({**metric.get_config(), "name": spec})  # as compile names it
    if not isinstance(metric, keras.metrics.Metric):
        name = spec if isinstance(spec, str) else getattr(metric, "__name__", "metric")
        metric = keras.metrics.MeanMetricWrapper(metric, name=name)
    return metric
