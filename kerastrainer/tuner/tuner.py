"""``Tuner(trainer)``: a learning-rate range test and a batch-size search before the real fit."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.finders import BATCH_SIZE_MODES, LR_MODES
from kerastrainer.data.sources import is_array_data
from kerastrainer.flags import TrainerFlags
from kerastrainer.tuner.batch_size import out_of_memory, rows_of, search
from kerastrainer.tuner.lr_finder import LRFinder, LRSweep
from kerastrainer.tuner.state import ModuleSnapshot, find_attribute, set_attribute, sweep_trainer

LR_NAMES = ("lr", "learning_rate")


class Tuner:
    """Runs short tuning sweeps with a [`Trainer`][kerastrainer.Trainer]'s settings (strategy,
    precision, XLA, clipping), then leaves the module as it found it: the fit that follows
    starts from step 0.

    Each sweep runs on its own short-lived trainer: the trainer's callbacks, loggers and
    checkpoints see nothing of it.

    Args:
        trainer: the trainer whose settings the sweeps use.

    Raises:
        TypeError: ``trainer`` is not a Trainer.

    Examples:
        >>> tuner = Tuner(trainer)  # doctest: +SKIP
        >>> finder = tuner.lr_find(module, (x, y))  # doctest: +SKIP
        >>> finder.suggestion(), module.hparams.lr  # doctest: +SKIP
        (0.0026, 0.0026)
        >>> trainer.fit(module, (x, y))  # doctest: +SKIP
    """

    def __init__(self, trainer: Any) -> None:
        if not isinstance(getattr(trainer, "flags", None), TrainerFlags):
            raise TypeError(f"Tuner(trainer) needs a kerastrainer.Trainer. Received: trainer={trainer!r}")
        self.trainer = trainer

    def lr_find(self, module: Any, train_data: Any = None, val_data: Any = None, *,
                datamodule: Any = None, batch_size: int | None = None, min_lr: float = 1e-8,
                max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: float | None = 4.0, update_attr: bool = True) -> LRFinder:
        """The learning-rate range test: ``num_training`` training steps whose rate grows from
        ``min_lr`` to ``max_lr``, recording the smoothed loss after each.

        The steps run compiled, one batch per call; the loss of each step is read (the one host
        transfer per step the test needs). The run stops early when the loss diverges. Weights,
        optimizer, optimizer variables and the global random generators are then put back.
        Validation data is not used (the sweep reads the training loss); ``val_data`` is accepted
        so the call mirrors ``fit``.

        Args:
            module: the [`TrainModule`][kerastrainer.TrainModule]; its ``configure_optimizer``
                must return one optimizer whose ``learning_rate`` is a number.
            train_data: the training data, as in ``Trainer.fit``.
            val_data: accepted as in ``Trainer.fit``, not used.
            datamodule: a DataModule instead of ``train_data``.
            batch_size: the batch size of array data.
            min_lr: the first rate, ``0 < min_lr < max_lr``.
            max_lr: the last rate.
            num_training: the number of steps (at least 2); the data repeats if it is shorter.
            mode: ``"exponential"`` (rates evenly spaced on a log scale) or ``"linear"``.
            early_stop_threshold: stop once the smoothed loss exceeds this many times the best
                so far; ``None`` never stops early (a non-finite loss always stops).
            update_attr: write the `LRFinder.suggestion` into ``module.hparams.lr`` (or
                ``learning_rate``, or a module attribute of that name) when there is one, which
                ``configure_optimizer`` then reads; a warning says when there is none.

        Returns:
            An [`LRFinder`][kerastrainer.tuner.LRFinder]: ``.results``, ``.suggestion()``,
            ``.plot()``.

        Raises:
            ValueError: an argument out of range, or an optimizer whose rate cannot be set.

        Warns:
            UserWarning: ``update_attr`` and the module has no ``lr``/``learning_rate`` to write.
        """
        place = _check_lr_find(module, min_lr=min_lr, max_lr=max_lr, num_training=num_training,
                               mode=mode, early_stop_threshold=early_stop_threshold,
                               update_attr=update_attr)
        finder = LRFinder(mode=mode, min_lr=float(min_lr), max_lr=float(max_lr),
                          num_training=int(num_training))
        snapshot = ModuleSnapshot(module)
        sweep = LRSweep(finder, early_stop_threshold=early_stop_threshold, snapshot=snapshot)
        try:
            sweep_trainer(self.trainer, max_steps=num_training, callbacks=[sweep]).fit(
                module, train_data, None, datamodule=datamodule, batch_size=batch_size)
        finally:
            snapshot.restore()
        del val_data  # see the docstring: the sweep reads the training loss only
        if place is not None:
            suggestion = finder.suggestion()
            if suggestion is not None:
                set_attribute(place, suggestion)
        return finder

    def scale_batch_size(self, module: Any, train_data: Any = None, val_data: Any = None, *,
                         datamodule: Any = None, mode: str = "power", steps_per_trial: int = 3,
                         init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size") -> int:
        """Finds the largest batch size that trains without running out of device memory.

        Each trial trains ``steps_per_trial`` steps at one size; a
        ``tf.errors.ResourceExhaustedError`` (out of memory) means the size does not fit. The module
        is put back after every trial. Array data is re-batched; other data must come from a
        DataModule with a ``batch_size`` attribute.

        Args:
            module: the [`TrainModule`][kerastrainer.TrainModule].
            train_data: array training data, as in ``Trainer.fit``.
            val_data: accepted as in ``Trainer.fit``, not used (validation is not run).
            datamodule: a DataModule with a ``batch_size`` attribute, instead of ``train_data``.
            mode: ``"power"`` doubles from ``init_val`` until a size fails; ``"binsearch"`` then
                bisects between the last size that fitted and the first that did not.
            steps_per_trial: training steps per trial.
            init_val: the first size tried.
            max_trials: at most this many trials.
            batch_arg_name: the attribute written with the result: the DataModule's, else
                ``module.hparams``' (when present; with arrays, pass the result to ``fit``).

        Returns:
            The largest size that ran (at most the number of rows of array data).

        Raises:
            ValueError: an argument out of range, or data that cannot be re-batched.
            MemoryError: not even a batch of one fits.
        """
        arrays = _check_scale(train_data, datamodule, mode=mode, steps_per_trial=steps_per_trial,
                              init_val=init_val, max_trials=max_trials)
        rows = rows_of(train_data) if arrays else None
        trial = _Trials(self.trainer, module, train_data, datamodule, rows=rows,
                        steps=steps_per_trial, arrays=arrays)
        original = getattr(datamodule, "batch_size", None)
        try:
            best, tried = search(trial, mode=mode, init_val=int(init_val), max_trials=int(max_trials))
        finally:
            if datamodule is not None:
                datamodule.batch_size = original
        if best is None:
            raise MemoryError(
                f"scale_batch_size: no batch size fits in device memory; tried "
                f"{[size for size, _ in tried]}. Use a smaller model or precision='bf16-mixed'.")
        best = min(best, rows) if rows else best
        place = find_attribute(module, (batch_arg_name,), holder=datamodule)
        if place is not None:  # always, for a DataModule; with arrays, the caller passes it to fit
            set_attribute(place, best)
        del val_data
        return best


class _Trials:
    """``trial(size) -> (fits, whole data in one batch)``: a short fit at ``size``, the module
    put back after it."""

    def __init__(self, trainer, module, train_data, datamodule, *, rows, steps, arrays) -> None:
        self.trainer, self.module, self.train_data, self.datamodule = trainer, module, train_data, datamodule
        self.rows, self.steps, self.arrays = rows, steps, arrays
        self.snapshot = ModuleSnapshot(module)

    def __call__(self, size: int) -> tuple[bool, bool]:
        size = min(size, self.rows) if self.rows else size
        if self.datamodule is not None:
            self.datamodule.batch_size = size
        trainer = sweep_trainer(self.trainer, max_steps=self.steps, callbacks=[_Capture(self.snapshot)])
        try:
            trainer.fit(self.module, self.train_data, None, datamodule=self.datamodule,
                        batch_size=size if self.arrays else None)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is an answer
            if out_of_memory(error):
                return False, False
            raise
        finally:
            self.snapshot.restore()
        return True, trainer.num_training_batches == 1


class _Capture(Callback):
    """Takes an unbuilt module's initial weights once the trial has built them."""

    def __init__(self, snapshot: ModuleSnapshot) -> None:
        self.snapshot = snapshot

    def on_fit_start(self, trainer, module) -> None:
        self.snapshot.capture()


def _check_lr_find(module, *, min_lr, max_lr, num_training, mode, early_stop_threshold,
                   update_attr) -> tuple | None:
    """Checks `Tuner.lr_find`'s arguments; returns where the suggestion will be written."""
    _positive("min_lr", min_lr)
    _positive("max_lr", max_lr)
    if not min_lr < max_lr:
        raise ValueError(f"lr_find needs min_lr < max_lr. Received: min_lr={min_lr}, max_lr={max_lr}")
    _integer("num_training", num_training, 2)
    if mode not in LR_MODES:
        raise ValueError(f"`mode` must be one of {LR_MODES}. Received: mode={mode!r}")
    if early_stop_threshold is not None:
        _positive("early_stop_threshold", early_stop_threshold)
    if not update_attr:
        return None
    place = find_attribute(module, LR_NAMES)
    if place is None:  # said before the sweep, so nobody believes the fit uses the suggestion
        warnings.warn(
            f"lr_find(update_attr=True) writes the suggested rate into the module, but "
            f"{type(module).__name__} has no `lr` or `learning_rate` in its hparams or "
            "attributes, so the fit will not use it. Add an `lr` argument to __init__ (with "
            "save_hyperparameters()) and use it in configure_optimizer, or read "
            "finder.suggestion() (update_attr=False silences this).", UserWarning, stacklevel=3)
    return place


def _check_scale(train_data, datamodule, *, mode, steps_per_trial, init_val, max_trials) -> bool:
    """Checks `Tuner.scale_batch_size`'s arguments; returns whether the data is arrays."""
    if mode not in BATCH_SIZE_MODES:
        raise ValueError(f"`mode` must be one of {BATCH_SIZE_MODES}. Received: mode={mode!r}")
    _integer("steps_per_trial", steps_per_trial, 1)
    _integer("init_val", init_val, 1)
    _integer("max_trials", max_trials, 1)
    arrays = datamodule is None and train_data is not None and is_array_data(train_data)
    if not arrays and not (datamodule is not None and hasattr(datamodule, "batch_size")):
        kind = type(datamodule if datamodule is not None else train_data).__name__
        raise ValueError(
            "scale_batch_size re-batches the training data, so it needs arrays (train_data=(x, y)) "
            "or a DataModule with a `batch_size` attribute that its datasets use. Received: "
            f"{'datamodule' if datamodule is not None else 'train_data'} of type {kind}. Batch a "
            "tf.data.Dataset or PyDataset inside a DataModule that reads self.batch_size.")
    return arrays


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")


def _integer(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
