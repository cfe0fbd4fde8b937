"""A keras.utils.PyDataset that reads its batches from files, four reads at a time.

The digits are written as one .npy file per batch into a folder; the PyDataset loads one file per
`__getitem__`, as a dataset of images on disk does. `workers=4` keeps four reads in flight,
the batch order is reshuffled every epoch (as Keras's fit does), and `on_epoch_end` runs between
epochs.

Run: `python examples/pydataset.py --epochs 5 --workers 4`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerastrainer as kt  # noqa: E402
from _digits_data import load_digits_splits  # noqa: E402
from digits import DigitClassifier  # noqa: E402


class BatchFiles(keras.utils.PyDataset):
    """Batches stored as ``batch_<i>.npz`` files; ``latency`` seconds per read (a network disk)."""

    def __init__(self, folder: str, latency: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
        self.latency = latency
        self.epochs_seen = 0

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        time.sleep(self.latency)
        with np.load(self.paths[index]) as batch:
            return batch["x"], batch["y"]

    def on_epoch_end(self):
        self.epochs_seen += 1


def write_batches(x, y, folder: str, batch_size: int) -> None:
    for start in range(0, len(x), batch_size):
        np.savez(os.path.join(folder, f"batch_{start // batch_size:04d}.npz"),
                 x=x[start:start + batch_size], y=y[start:start + batch_size])


class EpochTimes(kt.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.times.append(time.perf_counter() - self._start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)

    kt.seed_everything(0)
    (x, y), val, (x_test, y_test) = load_digits_splits()
    with tempfile.TemporaryDirectory() as folder:
        write_batches(x, y, folder, batch_size=32)
        data = BatchFiles(folder, workers=args.workers, max_queue_size=8)
        clock = EpochTimes()
        trainer = kt.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
        module = DigitClassifier(hidden=64)
        trainer.fit(module, train_data=data, val_data=val)
    accuracy = trainer.test(module, (x_test, y_test), batch_size=64)["test_acc"]
    print(f"{len(data)} batch files, workers={args.workers}: {np.median(clock.times[1:] or clock.times):.2f} s "
          f"per epoch (reads alone, one at a time: {len(data) * data.latency:.2f} s)")
    print(f"on_epoch_end calls: {data.epochs_seen}")
    print(f"Test accuracy: {accuracy:.3f}")


if __name__ == "__main__":
    main()
