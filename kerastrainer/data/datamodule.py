"""DataModule: data preparation and the datasets of every stage, in one object."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sys

from kerastrainer.hparams import AttributeDict, normalize_hparams


class DataModule:
    """Groups data preparation and the datasets of every stage.

    Override what you need. Each ``*_dataset`` method returns anything ``Trainer.fit`` accepts as
    data: a batched ``tf.data.Dataset``, arrays, a ``keras.utils.PyDataset`` or a generator. Arrays are
    batched with the call's ``batch_size``, else this object's ``batch_size`` attribute, else 32.

    Examples:
        >>> class Digits(DataModule):
        ...     batch_size = 64
        ...     def setup(self, stage):
        ...         from sklearn.datasets import load_digits
        ...         x, y = load_digits(return_X_y=True)
        ...         self.train, self.val = (x[:1500] / 16, y[:1500]), (x[1500:] / 16, y[1500:])
        ...     def train_dataset(self):
        ...         return self.train
        ...     def val_dataset(self):
        ...         return self.val
    """

    _kt_hparams: AttributeDict | None = None  # set by save_hyperparameters

    def save_hyperparameters(self, *names: str, ignore: str | Iterable[str] | None = None) -> None:
        """Stores ``__init__`` arguments in ``self.hparams`` (logged with the module's, and checkpointed).

        Args:
            *names: keep only these arguments; or pass one dict instead.
            ignore: argument name(s) to leave out (large arrays, for example).
        """
        self._kt_hparams = normalize_hparams(names, sys._getframe(1), ignore)

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters (empty until `save_hyperparameters`)."""
        return self._kt_hparams or AttributeDict()

    def prepare_data(self) -> None:
        """Downloads or writes files once; called before ``setup``."""

    def setup(self, stage: str) -> None:
        """Builds the splits for ``stage`` (``"fit"``, ``"validate"``, ``"test"``, ``"predict"``)."""

    def teardown(self, stage: str) -> None:
        """Releases what ``setup`` built."""

    def train_dataset(self) -> Any:
        """Returns the training data (or ``None``)."""
        return None

    def val_dataset(self) -> Any:
        """Returns the validation data (or ``None``)."""
        return None

    def test_dataset(self) -> Any:
        """Returns the test data (or ``None``)."""
        return None

    def predict_dataset(self) -> Any:
        """Returns the prediction inputs (or ``None``)."""
        return None

    def state_dict(self) -> dict:
        """Returns state to store in checkpoints (plain Python or arrays)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what `state_dict` returned."""
