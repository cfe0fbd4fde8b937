"""Finding the largest batch size that fits: short trials at growing sizes until memory runs out."""

from __future__ import annotations

import gc
from typing import Any, Callable

import tensorflow as tf

def search(trial: Callable[[int], tuple[bool, bool]], *, mode: str, init_val: int,
           max_trials: int) -> tuple[int | None, list[tuple[int, bool]]]:
    """Runs ``trial(size) -> (fits, whole_data)`` at sizes chosen by ``mode``.

    ``power`` doubles from ``init_val`` until a size does not fit, the data fits in one batch or
    ``max_trials`` ran. ``binsearch`` does the same, then bisects between the last size that fitted
    and the first that did not, until they are neighbours (Lightning's two modes).

    Returns:
        ``(largest size that ran or None, [(size, fitted), ...] in the order tried)``.
    """
    tried: list[tuple[int, bool]] = []
    low, high, size = None, None, init_val
    while len(tried) < max_trials:
        fits, whole = trial(size)
        tried.append((size, fits))
        if fits:
            low = size
            if whole:  # a bigger batch is the same batch
                break
            size = size * 2 if high is None else (low + high) // 2
        else:
            high = size
            if mode == "power" or low is None:
                if low is None and size > 1:
                    size //= 2  # even the first size failed: look below it
                    continue
                break
            size = (low + high) // 2
        if mode == "binsearch" and high is not None and low is not None and high - low <= 1:
            break
    return low, tried


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (then the trial is a "no")."""
    if isinstance(error, tf.errors.ResourceExhaustedError):
        gc.collect()  # let the failed trial's buffers go before the next one
        return True
    return False


def rows_of(data: Any) -> int | None:
    """The number of rows of array data (its first leaf), ``None`` for other data."""
    leaves = tf.nest.flatten(data)
    return len(leaves[0]) if leaves and hasattr(leaves[0], "__len__") else None
