"""Tuning before training: a learning-rate range test and a batch-size search on the digits.

Run: `python examples/tuning.py --plot lr_find.png` (the plot in docs/tuning.md comes from this).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402
from digits import DigitClassifier  # noqa: E402


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--plot", default=None, help="write the loss-vs-rate curve to this PNG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    kt.seed_everything(args.seed)
    train, val, test = load_digits_splits(seed=args.seed)
    module = DigitClassifier(lr=1e-3)
    trainer = kt.Trainer(max_epochs=args.epochs, enable_model_summary=False)
    tuner = kt.tuner.Tuner(trainer)

    # The largest batch size that fits: on a CPU that is every row; on a GPU the memory decides.
    batch_size = tuner.scale_batch_size(module, train, mode="binsearch", max_trials=6)
    print(f"Batch size search (up to 6 trials): {batch_size} fits")
    batch_size = min(batch_size, 64)  # more steps per epoch for this small data set

    finder = tuner.lr_find(module, train, batch_size=batch_size, min_lr=1e-5, max_lr=1.0)
    print(f"Suggested learning rate: {finder.suggestion():.2e} (module.hparams.lr = {module.hparams.lr:.2e})")
    if args.plot:
        finder.plot(args.plot)
        print(f"Sweep plot: {args.plot}")

    trainer.fit(module, train_data=train, val_data=val, batch_size=batch_size)  # from step 0
    accuracy = trainer.test(data=test)["test_acc"]
    print(f"Test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
