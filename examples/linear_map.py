"""Course notes, "Layer subclassing": the LinearMap layer (add_weight) inside a TrainModule.

Fits y = x @ W_true with the notes' LinearMap(input_dim, units) layer, then prints the learnt W.

Run: python examples/linear_map.py --epochs 30
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402


class LinearMap(keras.layers.Layer):
    """y = x @ w, with the weight created by add_weight (trainable by default)."""

    def __init__(self, input_dim, units, **kwargs):
        super().__init__(**kwargs)
        self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal")

    def call(self, inputs):
        return tf.matmul(inputs, self.w)


class LinearMapModel(kt.TrainModule):
    def __init__(self, input_dim=3, units=2, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.linear = LinearMap(input_dim, units)

    def call(self, x, training=False):
        return self.linear(x)

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.SGD(self.hparams.lr)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    w_true = np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]], dtype="float32")
    x = np.random.default_rng(0).normal(size=(512, 3)).astype("float32")
    module = LinearMapModel()
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False)
    trainer.fit(module, train_data=(x, x @ w_true))
    error = float(np.abs(module.linear.w.numpy() - w_true).max())
    print("learnt w:\n", np.round(module.linear.w.numpy(), 3), f"\nmax error: {error:.4f}")
    return error


if __name__ == "__main__":
    main()
