"""Course notes, "Model subclassing": NewModel's residual concatenation, as a TrainModule.

The notes' model concatenates the first hidden activations with a deeper branch, squashes with a
sigmoid and ends in a softmax. Here the softmax runs over 10 digit classes (a Dense head after the
concatenation), and kerastrainer supplies the loop the notes wrote by hand.

Run: python examples/new_model.py --epochs 10
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


class NewModel(kt.TrainModule):
    def __init__(self, lr=3e-3):
        super().__init__()  # the required line for inheritance, as in the notes
        self.save_hyperparameters()
        self.dense_1 = keras.layers.Dense(64, activation="relu")
        self.dense_2 = keras.layers.Dense(10)
        self.dense_3 = keras.layers.Dense(5)
        self.head = keras.layers.Dense(10)
        self.softmax = keras.layers.Softmax()

    def call(self, inputs, training=False):
        x = self.dense_1(inputs)
        y1 = self.dense_2(x)
        y2 = self.dense_3(y1)
        concat = keras.layers.concatenate([x, y2])  # the residual connection
        concat = tf.nn.sigmoid(concat)  # any tf.nn op works inside call
        return self.softmax(self.head(concat))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)  # probabilities

    def configure_optimizer(self):
        return keras.optimizers.Adam(self.hparams.lr)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    kt.seed_everything(0)
    train, val, test = load_digits_splits()
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False)
    trainer.fit(NewModel(), train_data=train, val_data=val)
    return trainer.test(data=test)


if __name__ == "__main__":
    main()
