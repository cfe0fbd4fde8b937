"""Course notes, "Build method": MyLayer (weights created in build) composed into MyModel.

The notes' model is only usable after a first call; inside a Trainer that happens automatically,
from the shape of the data, before the step is compiled.

Run: python examples/my_model.py --epochs 15
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


class MyLayer(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):  # runs on the first call, when the input width is known
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return tf.matmul(inputs, self.w) + self.b


class MyModel(kt.TrainModule):
    def __init__(self, units_1=32, units_2=10, lr=3e-3):
        super().__init__()
        self.save_hyperparameters()
        self.layer_1 = MyLayer(units_1)
        self.layer_2 = MyLayer(units_2)
        self.softmax = keras.layers.Softmax()

    def call(self, inputs, training=False):
        x = tf.nn.relu(self.layer_1(inputs))
        return self.softmax(self.layer_2(x))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

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
    model = MyModel(units_1=32, units_2=10)
    trainer = kt.Trainer(max_epochs=args.epochs)  # prints model.summary() once built
    trainer.fit(model, train_data=train, val_data=val)
    return trainer.test(data=test)


if __name__ == "__main__":
    main()
