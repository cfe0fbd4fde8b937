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

    Example:
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


def last_seed() -> int | None:
    """The seed of the latest :func:`seed_everything` call, if any."""
    return _last_seed
