"""ArrayDataModule: shuffle, split into train/val/test and standardise in-memory arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerastrainer.data.datamodule import DataModule


def _fraction(name: str, value, *, allow_zero: bool) -> float:
    low_ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"`{name}` must be a fraction in {interval}. Received: {name}={value!r}")
    return float(value)


class ArrayDataModule(DataModule):
    """Splits arrays into train/val/test (after a seeded shuffle) and optionally standardises them.

    The standardisation statistics (per-feature mean and standard deviation, like scikit-learn's
    ``StandardScaler``) are computed on the training split only and applied to every split, so
    validation and test rows never influence them. They are part of `state_dict`, so a run
    resumed from a checkpoint uses the same statistics; `transform` applies them to new data.

    Args:
        x: the inputs, an array with one row per example.
        y: the targets, with as many rows.
        batch_size: batch size of every split.
        val_split: fraction of rows for validation, in (0, 1).
        test_split: fraction of rows for testing, in [0, 1).
        shuffle_before_split: shuffle the rows (with ``seed``) before splitting.
        standardize: subtract the training mean and divide by the training standard deviation.
        seed: the shuffle seed.

    Raises:
        ValueError: arrays of different lengths, fractions out of range, or too few rows.

    Examples:
        >>> import numpy as np
        >>> dm = ArrayDataModule(np.arange(20.0).reshape(10, 2), np.arange(10), val_split=0.2,
        ...                      standardize=True)
        >>> dm.setup("fit")
        >>> len(dm.train_dataset()[0]), len(dm.val_dataset()[0])
        (8, 2)
    """

    def __init__(self, x: Any, y: Any, *, batch_size: int = 32, val_split: float = 0.2,
                 test_split: float = 0.0,
                 shuffle_before_split: bool = True, standardize: bool = False, seed: int = 0) -> None:
        self.save_hyperparameters(ignore=("x", "y"))
        x = np.asarray(x)
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"ArrayDataModule: x and y must have the same number of rows. Received "
                             f"len(x)={len(x)} and len(y)={len(y)}.")
        self.val_split = _fraction("val_split", val_split, allow_zero=False)
        self.test_split = _fraction("test_split", test_split, allow_zero=True)
        if self.val_split + self.test_split >= 1:
            raise ValueError("ArrayDataModule: val_split + test_split must leave rows for training. "
                             f"Received: val_split={val_split}, test_split={test_split}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle_before_split = shuffle_before_split
        self.standardize = standardize
        self.seed = seed
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self._splits: dict | None = None

    def setup(self, stage: str) -> None:
        if self._splits is not None:
            return
        rows = len(self.x)
        order = (np.random.default_rng(self.seed).permutation(rows) if self.shuffle_before_split
                 else np.arange(rows))
        n_test = int(round(rows * self.test_split))
        n_val = int(round(rows * self.val_split))
        if rows - n_val - n_test < 1 or n_val < 1:
            raise ValueError(f"ArrayDataModule: {rows} rows are too few for val_split={self.val_split}"
                             f" and test_split={self.test_split}.")
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                 "train": order[n_test + n_val:]}
        self._splits = {name: (self.x[index], self.y[index]) for name, index in parts.items()}
        if self.standardize and self.mean is None:
            train_x = self._splits["train"][0].astype("float64")
            self.mean = train_x.mean(axis=0)
            std = train_x.std(axis=0)
            self.std = np.where(std > 0, std, 1.0)  # constant features stay as they are

    def transform(self, x: Any) -> Any:
        """Applies the training statistics to ``x`` (the identity without ``standardize``)."""
        if not self.standardize:
            return x
        if self.mean is None:
            raise RuntimeError("ArrayDataModule.transform needs the statistics: call setup('fit') "
                               "(the Trainer does) or load_state_dict first.")
        return ((np.asarray(x, dtype="float64") - self.mean) / self.std).astype("float32")

    def _split(self, name):
        if self._splits is None:
            self.setup("fit")
        x, y = self._splits[name]
        return (self.transform(x), y) if len(x) else None

    def train_dataset(self) -> Any:
        return self._split("train")

    def val_dataset(self) -> Any:
        return self._split("val")

    def test_dataset(self) -> Any:
        return self._split("test")

    def predict_dataset(self) -> Any:
        split = self._split("test")
        return None if split is None else split[0]

    def state_dict(self) -> dict:
        state: dict = {"seed": self.seed, "rows": len(self.x), "val_split": self.val_split,
                 "test_split": self.test_split}
        if self.mean is not None:
            state.update(mean=np.asarray(self.mean), std=np.asarray(self.std))
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        if int(state_dict["rows"]) != len(self.x) or int(state_dict["seed"]) != self.seed:
            raise ValueError(
                f"ArrayDataModule: the checkpoint was made with {state_dict['rows']} rows and seed "
                f"{state_dict['seed']}, this module has {len(self.x)} rows and seed {self.seed}. Use "
                "the same data and seed to resume.")
        if "mean" in state_dict:
            self.mean = np.asarray(state_dict["mean"])
            self.std = np.asarray(state_dict["std"])
