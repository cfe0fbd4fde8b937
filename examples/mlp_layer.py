"""Course notes, "Layer subclassing" example 2: MlpLayer, whose build() creates one weight matrix
per layer once the input shape is known, trained on digits inside a TrainModule.

Run: python examples/mlp_layer.py --epochs 15
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402

ACTIVATIONS = {"relu": tf.nn.relu, "sigmoid": tf.nn.sigmoid, "softmax": tf.nn.softmax,
               "linear": tf.identity}


class MlpLayer(keras.layers.Layer):
    """A stack of matmuls; the weights are created in build(), when the input width is known."""

    def __init__(self, units, activations, **kwargs):
        super().__init__(**kwargs)
        self.units = list(units)
        self.activations_list = list(activations)
        self.weights_list = []

    def build(self, input_shape):
        width = input_shape[-1]
        for i, units in enumerate(self.units):
            self.weights_list.append(self.add_weight(
                name=f"weights-{i}", shape=(width, units), initializer="glorot_uniform"))
            width = units  # the next matrix takes this layer's output

    def call(self, x):
        output = x
        for weights, activation in zip(self.weights_list, self.activations_list):
            output = ACTIVATIONS[activation](tf.matmul(output, weights))
        return output


class MlpClassifier(kt.TrainModule):
    def __init__(self, hidden=64, lr=3e-3):
        super().__init__()
        self.save_hyperparameters()
        self.mlp = MlpLayer([hidden, 10], ["relu", "linear"])

    def call(self, x, training=False):
        return self.mlp(x)

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(self.hparams.lr)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    train, val, test = load_digits_splits()
    trainer = kt.Trainer(max_epochs=args.epochs)
    trainer.fit(MlpClassifier(), train_data=train, val_data=val)
    return trainer.test(data=test)


if __name__ == "__main__":
    main()
