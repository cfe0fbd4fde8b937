"""Mixed precision through Keras dtype policies, set for a run and restored after it."""

from __future__ import annotations

import contextlib

import keras

_ALIASES = {"32": "float32", "32-true": "float32", "float32": "float32",
            "mixed_float16": "mixed_float16", "16-mixed": "mixed_float16",
            "mixed_bfloat16": "mixed_bfloat16", "bf16-mixed": "mixed_bfloat16"}


def normalize_precision(value) -> str:
    """``"32"``, ``"mixed_float16"``, ``"mixed_bfloat16"`` (or Lightning's ``"16-mixed"``,
    ``"bf16-mixed"``) -> a Keras dtype policy name."""
    key = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if key not in _ALIASES:
        raise ValueError(
            "`precision` must be '32', 'mixed_float16' or 'mixed_bfloat16' (or '16-mixed', "
            f"'bf16-mixed'). Received: precision={value!r}")
    return _ALIASES[key]


@contextlib.contextmanager
def precision_scope(policy: str, module):
    """Runs with ``policy`` as the global policy and on every layer of ``module``, then restores both.

    Mixed policies keep variables in float32 and compute in float16/bfloat16, so they can be set on
    layers that are already built; layers created inside ``call`` pick the global policy.
    """
    if policy == "float32":
        yield
        return
    previous_global = keras.config.dtype_policy()
    layers = list(module._flatten_layers(include_self=True))
    previous = [layer.dtype_policy for layer in layers]
    keras.config.set_dtype_policy(policy)
    try:
        for layer in layers:
            layer.dtype_policy = policy
        yield
    finally:
        for layer, old in zip(layers, previous):
            layer.dtype_policy = old
        keras.config.set_dtype_policy(previous_global)
