"""Small modules and data shared by the tests."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import kerastrainer as kt


class BoringModule(kt.TrainModule):
    """A tiny regressor: Dense(4) -> Dense(1), MSE, SGD. Subclass it to test one thing."""

    def __init__(self, units=4, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.hidden = keras.layers.Dense(units, activation="tanh")
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.SGD(self.hparams.lr)


class BoringClassifier(kt.TrainModule):
    """A tiny 3-class classifier reporting `acc`."""

    def __init__(self, classes=3):
        super().__init__()
        self.flatten = keras.layers.Flatten()  # so image batches work too
        self.out = keras.layers.Dense(classes)

    def call(self, x, training=False):
        return self.out(self.flatten(x))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(0.05)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


class ScriptedScore(BoringModule):
    """Logs a scripted `score` at every epoch end: values[epoch]."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)

    def on_train_epoch_end(self):
        self.log("score", self.values[self.trainer.current_epoch])


class PythonInItsStep(BoringModule):
    """A custom step that reads tensor values in Python: it runs only eagerly (run_eagerly=True)."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        rows = int(tf.shape(x)[0])
        assert x.numpy().shape[0] == rows
        return keras.ops.mean(keras.ops.square(self(x, training=True) - y))


def regression_data(rows=64, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = (x @ np.arange(1, features + 1, dtype="float32"))[:, None] * 0.1
    return x, y


def classification_data(rows=60, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=rows)
    x = rng.normal(size=(rows, features)).astype("float32") + 3 * y[:, None]
    return x, y


def quiet_trainer(**flags):
    """A Trainer that prints and writes nothing (no bar, summary, checkpoints or logs)."""
    flags.setdefault("enable_progress_bar", False)
    flags.setdefault("enable_model_summary", False)
    flags.setdefault("enable_checkpointing", False)
    flags.setdefault("logger", False)
    return kt.Trainer(**flags)
