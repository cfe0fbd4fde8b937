"""Which data a stage runs on: the argument given, or the DataModule's method for that stage."""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

from kerastrainer.data.datamodule import DataModule
from kerastrainer.data.fit_options import apply_class_weight, split_validation
from kerastrainer.data.sources import Source, is_array_data, to_source
from kerastrainer.stages import PREDICT, TRAIN, VAL


def several_datasets(data) -> bool:
    """Whether ``data`` is a list of several datasets (``val_data=[a, b]``): a list of
    ``tf.data.Dataset``s, ``PyDataset``s, ``(x, y)`` tuples or dicts. A list of arrays stays one
    dataset (Keras's ``[x, y]``).

    Raises:
        TypeError: a list mixing datasets with arrays.
    """
    if not isinstance(data, list) or not data:
        return False
    kinds = [isinstance(d, (tf.data.Dataset, keras.utils.PyDataset, tuple, dict)) for d in data]
    if any(kinds) and not all(kinds):
        raise TypeError(
            "A list of data is either several datasets (each a tf.data.Dataset, a PyDataset, an "
            "(x, y) tuple or a dict) or the arrays of one dataset, not both. Received a list of "
            f"{[type(d).__name__ for d in data]}. Pass [(x1, y1), (x2, y2)] for several.")
    return all(kinds)


def eval_sources(stage, data, datamodule, batch_size, *, fit) -> tuple:
    """``(datamodule, sources)`` of a ``validate``, ``test`` or ``predict`` run: from ``data``, else
    from ``datamodule``, else from ``fit``'s ``(datamodule, batch_size)`` (Lightning's default);
    several datasets for validation and test only."""
    if data is None and datamodule is None and fit[0] is not None:
        datamodule, batch_size = fit
    return datamodule, stage_sources(stage, data, datamodule, name="data", batch_size=batch_size,
                                     shuffle=False, several=stage is not PREDICT)


def stage_sources(stage, data, datamodule, *, name: str, batch_size, shuffle: bool,
                  setup: bool = True, required: bool = True, several: bool = True) -> list[Source]:
    """The `Source`s of a stage that may run on several datasets (validation and test): one per
    dataset, in order (empty: no data). Arguments as for `stage_source`."""
    source = stage_source(stage, data, datamodule, name=name, batch_size=batch_size,
                          shuffle=shuffle, setup=setup, required=required, several=several)
    return [] if source is None else source if isinstance(source, list) else [source]


def stage_source(stage, data, datamodule, *, name: str, batch_size, shuffle: bool,
                 setup: bool = True, required: bool = True, several: bool = False):
    """Returns the `Source` for ``stage`` (a `kerastrainer.stages`
    stage), from ``data`` or from ``datamodule``'s ``stage.dataset`` method.

    Args:
        stage: the stage the data is for.
        data: what the user passed (``None`` when the DataModule provides it).
        datamodule: a [`DataModule`][kerastrainer.DataModule] or ``None``.
        name: the argument's name, for error messages (``"train_data"``).
        batch_size: the batch size for array data (``None``: the DataModule's, else 32).
        shuffle: reshuffle array rows every epoch.
        setup: call ``datamodule.prepare_data()`` and ``setup(stage.entry)`` first.
        required: raise when there is no data (else return ``None``).
        several: a list of datasets gives a list of Sources (else it is refused).

    Raises:
        TypeError: ``datamodule`` is not a DataModule; a list of datasets where one is needed.
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
        data = stage.data_from(datamodule)
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
    if several_datasets(data):
        if not several:
            raise TypeError(
                f"Trainer.{stage.entry} runs on one dataset; several are for validation and test. "
                f"Received: {name}=[{len(data)} datasets]. Concatenate them, e.g. with "
                "tf.data.Dataset.concatenate.")
        return [to_source(d, batch_size=batch_size if is_array_data(d) else None,  # for the arrays
                          shuffle=shuffle, name=f"{name}[{i}]") for i, d in enumerate(data)]
    return to_source(data, batch_size=batch_size, shuffle=shuffle, name=name)


def fit_sources(train_data, val_data, datamodule, *, batch_size, overfit: bool, validates: bool,
                validation_split=None, class_weight=None, shuffle: bool = True):
    """The training `Source` of a fit and its validation ones (a list: empty, one, or several).

    Args:
        train_data: the ``train_data`` argument.
        val_data: the ``val_data`` argument.
        datamodule: a DataModule instead of both, or ``None``.
        batch_size: the batch size of array data.
        overfit: ``overfit_batches`` is on: validate on the (unshuffled) training data.
        validates: the module can run a validation step (it defines one, or a loss for the
            default one); otherwise validation data is skipped with a warning, as in Lightning.
        validation_split: Keras's: validate on the last fraction of array ``train_data``.
        class_weight: Keras's: ``{class: weight}`` weighing every training example by its class.
        shuffle: reshuffle array training data every epoch (Keras's default, ``True``).

    Raises:
        TypeError, ValueError: see `check_fit_data`, `stage_source` and
            `kerastrainer.data.fit_options`.
    """
    check_fit_data(train_data, val_data)
    train_data, val_data = split_validation(train_data, val_data, datamodule, validation_split)
    train = stage_source(TRAIN, train_data, datamodule, name="train_data", batch_size=batch_size,
                         shuffle=shuffle and not overfit)
    train = apply_class_weight(train, class_weight, "train_data")
    if overfit:
        return train, [train]
    vals = stage_sources(VAL, val_data, datamodule, name="val_data",  # Keras: batch_size is for arrays
                         batch_size=batch_size if val_data is None or is_array_data(val_data) else None,
                         shuffle=False, setup=False, required=False)
    if vals and not validates:
        warnings.warn("The module defines neither validation_step() nor loss(), so the validation "
                      "data is not used: validation is skipped. Define validation_step(self, batch, "
                      "batch_idx) to validate.", stacklevel=3)
        return train, []
    return train, vals


def check_fit_data(train_data, val_data) -> None:
    """Catches ``trainer.fit(module, x, y)``, Keras's ``fit(x, y)`` habit, which would make ``y``
    the validation data.

    Raises:
        TypeError: two bare arrays where the training data and the validation data go.
    """
    def bare(data):
        return hasattr(data, "shape") and not isinstance(data, tf.data.Dataset)

    if bare(train_data) and bare(val_data):
        raise TypeError(
            "Trainer.fit(module, x, y) received two arrays: the second argument is val_data, not "
            "the targets. Pass the training data as one argument, train_data=(x, y), and "
            "validation data as val_data=(x_val, y_val). Received: train_data of shape "
            f"{tuple(train_data.shape)}, val_data of shape {tuple(val_data.shape)}")
