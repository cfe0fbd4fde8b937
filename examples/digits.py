"""The demo: a digit classifier trained with a live progress bar, early stopping and a test table.

Run: `make demo` (or `python examples/digits.py --epochs 3`).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402


class DigitClassifier(kt.TrainModule):
    """An MLP on 8x8 digit images: 64 pixels -> hidden ReLU -> 10 logits."""

    def __init__(self, hidden=128, lr=2e-3, dropout=0.1):
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


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    kt.seed_everything(args.seed)
    train, val, test = load_digits_splits(seed=args.seed)
    timer = kt.callbacks.Timer(duration={"minutes": 10})  # a time budget (it survives resumes)
    speed = kt.callbacks.ThroughputMonitor(batch_size=args.batch_size)  # logged, read at the end
    trainer = kt.Trainer(
        max_epochs=args.epochs,
        callbacks=[kt.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                              restore_best_weights=True), timer, speed],
    )
    trainer.fit(DigitClassifier(), train_data=train, val_data=val, batch_size=args.batch_size)
    results = trainer.test(data=test)
    print(f"Training took {timer.time_elapsed('train'):.1f} s "
          f"({timer.time_elapsed('validate'):.1f} s of it validating)")
    print(f"Last epoch: {trainer.callback_metrics['epoch_samples_per_sec']:,.0f} samples/s")
    print(f"Training curves: {kt.plot_metrics(trainer.log_dir)}")
    print(f"Final test accuracy: {results['test_acc']:.4f}")
    return results["test_acc"]


if __name__ == "__main__":
    main()
