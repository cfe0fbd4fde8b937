"""Which data a stage runs on: the argument given, or the DataModule's method for that stage."""

from __future__ import annotations

from kerastrainer.data.datamodule import DataModule
from kerastrainer.data.sources import Source, is_array_data, to_source


def stage_source(stage, data, datamodule, *, name: str, batch_size, shuffle: bool,
                 setup: bool = True, required: bool = True) -> Source | None:
    """Returns the :class:`~kerastrainer.data.Source` for ``stage`` (a :mod:`kerastrainer.stages`
    stage), from ``data`` or from ``datamodule``'s ``stage.dataset`` method.

    Args:
        stage: the stage the data is for.
        data: what the user passed (``None`` when the DataModule provides it).
        datamodule: a :class:`~kerastrainer.DataModule` or ``None``.
        name: the argument's name, for error messages (``"train_data"``).
        batch_size: the batch size for array data (``None``: the DataModule's, else 32).
        shuffle: reshuffle array rows every epoch.
        setup: call ``datamodule.prepare_data()`` and ``setup(stage.entry)`` first.
        required: raise when there is no data (else return ``None``).

    Raises:
        TypeError: ``datamodule`` is not a DataModule.
        ValueError: both ``data`` and ``datamodule`` were given, or no data when it is required.
    """
    if datamodule is not None:
        if not isinstance(datamodule, DataModule):
            raise TypeError(
                f"`datamodule` must be a kerastrainer.DataModule. Received: {type(datamodule).__name__}"
            )
        if data is not None:
            raise ValueError(
                f"Pass either {name}=... or datamodule=..., not both. Received both for {name}."
            )
        if setup:
            datamodule.prepare_data()
            datamodule.setup(stage.entry)
        data = getattr(datamodule, stage.dataset)()
        if batch_size is None:
            batch_size = getattr(datamodule, "batch_size", None)
        name = f"{type(datamodule).__name__}.{stage.dataset}()"
        if batch_size is not None and not is_array_data(data):
            batch_size = None  # the DataModule's batch_size is for its array splits
    if data is None and required:
        what = "training data" if stage.name == "train" else "data"
        if datamodule is not None:
            raise ValueError(f"Trainer.{stage.entry} needs {what}, but {name} returned None. Return "
                             "arrays, a tf.data.Dataset, a PyDataset or a generator from it.")
        raise ValueError(
            f"Trainer.{stage.entry} needs {what}. Pass {name}=(x, y), a tf.data.Dataset, or "
            f"datamodule=... with a {stage.dataset}() method. Received: {name}=None")
    return to_source(data, batch_size=batch_size, shuffle=shuffle, name=name)
