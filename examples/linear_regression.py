"""Course notes, "Custom loops et linear regression": y = m x + b with a hand-made squared error.

The notes loop over steps with a GradientTape and assign_sub; here the same model and loss train in
a Trainer with SGD(0.05), and the script prints the recovered m and b.

Run: python examples/linear_regression.py --epochs 25
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402


def squared_error(y_pred, y_true):
    """The notes' hand-written loss."""
    return tf.reduce_mean(tf.square(y_pred - y_true))


class LinearRegression(kt.TrainModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.m = self.add_weight(shape=(), initializer=keras.initializers.RandomNormal(seed=1), name="m")
        self.b = self.add_weight(shape=(), initializer="zeros", name="b")

    def call(self, x, training=False):
        return self.m * x + self.b

    def loss(self, y_true, y_pred):
        return squared_error(y_pred, y_true)

    def configure_optimizer(self):
        return keras.optimizers.SGD(self.hparams.lr)


def main(argv=None) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(256,)).astype("float32")
    y = (2.0 * x + 0.5 + rng.normal(scale=0.05, size=x.shape)).astype("float32")
    module = LinearRegression()
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False)
    trainer.fit(module, train_data=(x, y), batch_size=32)
    m, b = float(module.m.numpy()), float(module.b.numpy())
    print(f"m = {m:.3f} (true 2.0), b = {b:.3f} (true 0.5)")
    return m, b


if __name__ == "__main__":
    main()
