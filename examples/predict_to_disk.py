"""Predictions streamed to disk: a trained digit classifier writes its test-set predictions batch
by batch, and `predict` keeps none of them in memory (`return_predictions=False`).

Run: `python examples/predict_to_disk.py --epochs 3 --out preds`.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402
from digits import DigitClassifier  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="preds", help="the folder the .npy files go to")
    args = parser.parse_args(argv)

    kt.seed_everything(0)
    train, val, (x_test, y_test) = load_digits_splits()
    module = DigitClassifier(hidden=64)
    trainer = kt.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[kt.callbacks.PredictionWriter(args.out, write_interval="batch")])
    trainer.fit(module, train_data=train, val_data=val, batch_size=64)
    returned = trainer.predict(module, x_test, batch_size=64, return_predictions=False)

    files = sorted(glob.glob(os.path.join(args.out, "batch_*.npy")))
    logits = np.concatenate([np.load(path) for path in files])  # read back, in batch order
    accuracy = float(np.mean(logits.argmax(axis=1) == y_test))
    print(f"predict returned {returned}; {len(files)} files, {len(logits)} rows in {args.out}")
    print(f"Test accuracy from the files: {accuracy:.3f}")


if __name__ == "__main__":
    main()
