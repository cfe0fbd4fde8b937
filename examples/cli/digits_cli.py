"""A module and a DataModule for the config-file CLI (see config.yaml and docs/cli.md).

From this folder: `kerastrainer fit --config config.yaml`, or `python main.py fit --config config.yaml`.
"""

from __future__ import annotations

import keras
import numpy as np

import kerastrainer as kt


class DigitModule(kt.TrainModule):
    """An MLP on the 8x8 digits.

    Args:
        hidden: units of the hidden layer.
        lr: Adam's learning rate.
        dropout: dropout after the hidden layer.
    """

    def __init__(self, hidden: int = 64, lr: float = 2e-3, dropout: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hidden = keras.layers.Dense(hidden, activation="relu")
        self.dropout = keras.layers.Dropout(dropout)
        self.out = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.out(self.dropout(self.hidden(x), training=training))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(self.hparams.lr)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


class DigitData(kt.DataModule):
    """scikit-learn's bundled digits (no download), shuffled with ``seed`` and split 70/15/15.

    Args:
        batch_size: rows per batch.
        rows: use only this many rows (a quick run); ``None``: all 1,797.
        seed: the shuffle before the split.
    """

    def __init__(self, batch_size: int = 32, rows: int | None = None, seed: int = 0) -> None:
        self.save_hyperparameters()
        self.batch_size, self.rows, self.seed = batch_size, rows, seed

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(self.seed).permutation(len(x))[:self.rows]
        x, y = (x[order] / 16.0).astype("float32"), y[order]
        a, b = int(len(x) * 0.7), int(len(x) * 0.85)
        self.splits = {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}

    def train_dataset(self):
        return self.splits["train"]

    def val_dataset(self):
        return self.splits["val"]

    def test_dataset(self):
        return self.splits["test"]

    def predict_dataset(self):
        return self.splits["test"][0]
