"""Building a module before anything is compiled: batch structure, variables, input signature."""

from __future__ import annotations

import keras
import tensorflow as tf


def unpack_batch(batch, where: str):
    """Splits a batch into ``(x, y, sample_weight)`` the way Keras's ``fit`` does.

    Args:
        batch: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; lists and dicts are ``x``.
        where: the step that unpacks, for the error message.

    Raises:
        ValueError: a tuple of another length.
    """
    if not isinstance(batch, tuple):
        return batch, None, None
    if 1 <= len(batch) <= 3:
        return tuple(batch) + (None,) * (3 - len(batch))
    raise ValueError(
        f"{where} received a batch that is a tuple of {len(batch)} elements. The default step unpacks "
        "x, (x,), (x, y) or (x, y, sample_weight). Return one of these structures from your data, or "
        f"override {where.rsplit('.', 1)[-1]}(self, batch, batch_idx) to unpack it yourself."
    )


def ensure_built(module, element_spec, step: str, *, default_step: bool) -> None:
    """Builds the module's variables from the data's spec (before anything is compiled).

    Args:
        module: the TrainModule.
        element_spec: the spec of one batch.
        step: the step that will consume the batches (named in errors).
        default_step: ``step`` is the TrainModule's own (not overridden), which unpacks batches as
            :func:`unpack_batch` does.

    Raises:
        ValueError: the batch structure hides the inputs and the module is not built yet.
    """
    if module.built and module.input_signature is not None:
        return
    try:
        x_spec, _, _ = unpack_batch(element_spec, f"{type(module).__name__}.{step}")
    except ValueError:
        if default_step:
            raise  # the default step will fail the same way: say so now
        if module.built:
            return
        raise ValueError(
            f"{type(module).__name__} is not built and its inputs cannot be found in batches of "
            f"structure {element_spec}. Build it before training, e.g. module.build((None, 784)) or "
            "module(sample_x), so the optimizer can be created before the step is compiled."
        ) from None
    build_from_spec(module, x_spec)


def build_from_spec(module, x_spec) -> None:
    """Builds ``module`` from the spec of its inputs (batch dimension ``None``) and records it as
    ``module.input_signature``."""
    if not module.built:
        # A symbolic call builds every layer and keeps `None` batch sizes in module.summary(); a few
        # models cannot run symbolically, and a concrete batch of zeros builds those.
        try:
            module(tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype), x_spec))
        except Exception:  # noqa: BLE001 - any failure just means: build with real tensors
            module(tf.nest.map_structure(
                lambda s: tf.zeros([1 if d is None else d for d in s.shape], s.dtype), x_spec
            ), training=False)
    if module.input_signature is None:
        module.set_input_signature(x_spec)


def trainable_candidates(module) -> list:
    """Every variable that is trainable now or becomes so when its layer is unfrozen."""
    found, seen = [], set()
    for layer in module._flatten_layers(include_self=True):
        for variable in layer._trainable_variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found or list(module.trainable_variables)
