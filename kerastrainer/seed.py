"""Seeding Python, NumPy and TensorFlow in one call."""

from __future__ import annotations

import os

import keras

_last_seed: int | None = None


def seed_everything(seed: int = 0) -> int:
    """Seeds Python's ``random``, NumPy and TensorFlow (through ``keras.utils.set_random_seed``).

    Shuffling of array data draws its seed from NumPy, so a seeded run shuffles the same way again.

    Args:
        seed: an integer in ``[0, 2**32 - 1]``.

    Returns:
        The seed used.

    Raises:
        TypeError: ``seed`` is not an integer.
        ValueError: ``seed`` is out of range.

    Examples:
        >>> seed_everything(42)
        42
    """
    global _last_seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an integer. Received: seed={seed!r}")
    if not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"`seed` must be in [0, 2**32 - 1]. Received: seed={seed}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    _last_seed = seed
    return seed


def make_deterministic() -> None:
    """Seeds everything (with the last `seed_everything` seed, else 0) and turns on
    TensorFlow's op determinism: two runs then give bitwise equal weights."""
    import tensorflow as tf

    seed_everything(_last_seed if _last_seed is not None else 0)
    tf.config.experimental.enable_op_determinism()


def last_seed() -> int | None:
    """The seed of the latest `seed_everything` call, if any."""
    return _last_seed


def rng_state() -> dict:
    """The state of Python's, NumPy's and TensorFlow's global generators, for checkpoints."""
    import random

    import numpy as np
    import tensorflow as tf

    try:
        tf_state = np.asarray(tf.random.get_global_generator().state.numpy())
    except RuntimeError:  # with op determinism on, TF refuses to create it; nothing to save then
        tf_state = np.zeros(0, dtype=np.int64)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "numpy": {"kind": kind, "keys": np.asarray(keys), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "tensorflow": tf_state,
    }


def set_rng_state(state: dict) -> None:
    """Restores what `rng_state` returned."""
    import random

    import numpy as np
    import tensorflow as tf

    saved = state["numpy"]
    np.random.set_state((saved["kind"], np.asarray(saved["keys"], dtype=np.uint32), saved["pos"],
                         saved["has_gauss"], saved["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    if np.size(state["tensorflow"]):
        tf.random.get_global_generator().state.assign(state["tensorflow"])


class GlobalRNG:
    """Python's, NumPy's and TensorFlow's global generators as one piece of checkpoint state."""

    def state_dict(self) -> dict:
        return rng_state()

    def load_state_dict(self, state: dict) -> None:
        set_rng_state(state)
