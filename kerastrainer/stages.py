"""The four stages of a run, each described once: hooks, metric names, step, data and flags.

Everything that differs between training, validation, test and prediction is a field here, so no
other module maps ``"val"`` to ``"validation"`` or builds a flag name from a string.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable


@dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes:
        name: the short name, used as the key of the stage's accumulated values.
        entry: the Trainer method that runs it (and the ``stage`` passed to ``setup``/``teardown``).
        hook: the infix of its hooks: ``on_<hook>_start``, ``on_<hook>_batch_end``, ...
        prefix: what its metric names start with (``val_loss``, ``test_acc``).
        step: the name of the ``TrainModule`` method computing one batch (`step_fn` finds it).
        dataset: the name of the ``DataModule`` method giving its data (`data_from` calls it).
        limit_flag: the name of the Trainer flag limiting its batches (`limit` reads it).
        data_name: what errors call its data (``val_data``).
        dataloader_idx: which of several datasets of the stage this is (``None``: the only one).
    """

    name: str
    entry: str
    hook: str
    prefix: str
    step: str
    dataset: str
    limit_flag: str
    data_name: str
    dataloader_idx: int | None = None

    @property
    def suffix(self) -> str:
        """What its keys end with: ``/dataloader_idx_1`` for one of several datasets (Lightning's
        names, ``val_loss/dataloader_idx_1``), else nothing."""
        return "" if self.dataloader_idx is None else f"/dataloader_idx_{self.dataloader_idx}"

    def for_dataloader(self, index: int) -> "Stage":
        """The stage run on the ``index``-th of several datasets: its own accumulators and step."""
        return replace(self, name=f"{self.name}_dataloader_{index}", dataloader_idx=index)

    def step_fn(self, module: Any) -> Callable:
        """The module's step method for this stage (``module.training_step``, ...)."""
        return getattr(module, self.step)

    def data_from(self, datamodule: Any) -> Any:
        """What the DataModule's method for this stage returns (``datamodule.val_dataset()``)."""
        return getattr(datamodule, self.dataset)()

    def limit(self, flags: Any) -> int | float:
        """The stage's ``limit_*_batches`` among ``flags`` (a `TrainerFlags`)."""
        return getattr(flags, self.limit_flag)

    def hook_name(self, event: str) -> str:
        """``hook_name("batch_end")`` -> ``"on_validation_batch_end"``."""
        return f"on_{self.hook}_{event}"


TRAIN = Stage("train", "fit", "train", "", "training_step", "train_dataset", "limit_train_batches",
              "train_data")
VAL = Stage("val", "validate", "validation", "val_", "validation_step", "val_dataset", "limit_val_batches",
            "val_data")
TEST = Stage("test", "test", "test", "test_", "test_step", "test_dataset", "limit_test_batches",
             "test_data")
PREDICT = Stage("predict", "predict", "predict", "", "predict_step", "predict_dataset",
                "limit_predict_batches", "the prediction data")

#: The stages whose values are accumulated on the device (prediction returns outputs instead).
EVALUATED = (TRAIN, VAL, TEST)
