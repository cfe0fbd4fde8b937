"""Shared by the examples: scikit-learn's bundled digits (real data, no download), split by seed."""

from __future__ import annotations

import numpy as np


def load_digits_splits(seed: int = 0, rows: int | None = None):
    """Returns ((x_train, y_train), (x_val, y_val), (x_test, y_test)); pixels scaled to [0, 1].

    The course notes' advice: shuffle before splitting, and normalise the inputs.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    if rows is not None:
        order = order[:rows]
    x = (x[order] / 16.0).astype("float32")
    y = y[order]
    n = len(x)
    train_end, val_end = int(n * 0.7), int(n * 0.85)
    return (x[:train_end], y[:train_end]), (x[train_end:val_end], y[train_end:val_end]), \
        (x[val_end:], y[val_end:])
