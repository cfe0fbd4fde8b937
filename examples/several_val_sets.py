"""Several validation sets: a digit classifier validated on clean digits and on a noisy copy of
them in every epoch, each reported under its own keys (`val_acc/dataloader_idx_0`, `..._1`); the
checkpoint keeps the best epoch on the clean set.

Run: `python examples/several_val_sets.py --epochs 5`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402
from digits import DigitClassifier  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.3, help="std of the pixel noise of the second set")
    args = parser.parse_args(argv)

    kt.seed_everything(0)
    train, (x_val, y_val), _ = load_digits_splits()
    noisy = x_val + np.random.default_rng(1).normal(scale=args.noise, size=x_val.shape).astype("float32")
    clean_set = (x_val, y_val)  # arrays: batched with batch_size
    noisy_set = tf.data.Dataset.from_tensor_slices((noisy, y_val)).batch(128)  # any form works
    with tempfile.TemporaryDirectory() as folder:
        best = kt.callbacks.ModelCheckpoint(dirpath=folder, monitor="val_acc/dataloader_idx_0", mode="max")
        trainer = kt.Trainer(max_epochs=args.epochs, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[best])
        trainer.fit(DigitClassifier(hidden=64), train_data=train, val_data=[clean_set, noisy_set],
                    batch_size=64)
        print(f"best clean accuracy {best.best_model_score:.3f} in {os.path.basename(best.best_model_path)}")
    history = trainer.history
    for epoch, (clean, noisy_acc) in enumerate(zip(history["val_acc/dataloader_idx_0"],
                                                   history["val_acc/dataloader_idx_1"])):
        print(f"epoch {epoch + 1}: clean {clean:.3f}  noisy {noisy_acc:.3f}")


if __name__ == "__main__":
    main()
