"""``LearningRateFinder`` and ``BatchSizeFinder``: the tuner's sweeps run as a fit begins."""

from __future__ import annotations

from typing import Any

from kerastrainer.callbacks.base import Callback

LR_MODES = ("exponential", "linear")  # how the learning rate grows in Tuner.lr_find
BATCH_SIZE_MODES = ("power", "binsearch")  # how Tuner.scale_batch_size picks the next size


class BatchSizeFinder(Callback):
    """Runs [`Tuner.scale_batch_size`][kerastrainer.tuner.Tuner.scale_batch_size] when a fit
    begins (before its data is batched) and trains with the size it finds.

    Not run when the fit resumes from ``ckpt_path`` (the run keeps its batch size). The result is
    in ``optimal_batch_size``.

    Args:
        mode: ``"power"`` or ``"binsearch"``, as in ``scale_batch_size``.
        steps_per_trial: training steps per trial.
        init_val: the first size tried.
        max_trials: at most this many trials.
        batch_arg_name: the attribute written with the result.

    Examples:
        >>> trainer = Trainer(callbacks=[BatchSizeFinder(mode="binsearch")])  # doctest: +SKIP
    """

    def __init__(self, *, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2,
                 max_trials: int = 25, batch_arg_name: str = "batch_size") -> None:
        if mode not in BATCH_SIZE_MODES:
            raise ValueError(f"`mode` must be one of {BATCH_SIZE_MODES}. Received: mode={mode!r}")
        self.options = {"mode": mode, "steps_per_trial": steps_per_trial, "init_val": init_val,
                        "max_trials": max_trials, "batch_arg_name": batch_arg_name}
        self.optimal_batch_size: int | None = None

    def tune(self, tuner: Any, module: Any, data: dict) -> None:
        """Finds the size and writes it into ``data["batch_size"]`` (array data) or the
        DataModule; called by ``Trainer.fit`` with a `kerastrainer.tuner.Tuner`."""
        self.optimal_batch_size = tuner.scale_batch_size(
            module, data["train_data"], datamodule=data["datamodule"], **self.options)
        if data["datamodule"] is None:
            data["batch_size"] = self.optimal_batch_size


class LearningRateFinder(Callback):
    """Runs [`Tuner.lr_find`][kerastrainer.tuner.Tuner.lr_find] when a fit begins; with
    ``update_attr`` the fit then trains at the suggested rate.

    Runs after a [`BatchSizeFinder`][kerastrainer.callbacks.BatchSizeFinder] of the same fit, and
    not when the fit resumes from ``ckpt_path``. The sweep is in ``optimal_lr`` (an
    [`LRFinder`][kerastrainer.tuner.LRFinder]: ``optimal_lr.suggestion()``, ``optimal_lr.plot()``).

    Args:
        min_lr: the first rate of the sweep.
        max_lr: the last rate.
        num_training_steps: the sweep's steps (``lr_find``'s ``num_training``).
        mode: ``"exponential"`` or ``"linear"``.
        early_stop_threshold: stop once the smoothed loss exceeds this many times the best.
        update_attr: write the suggestion into ``module.hparams.lr`` (as ``lr_find`` does).

    Examples:
        >>> trainer = Trainer(callbacks=[LearningRateFinder(num_training_steps=50)])  # doctest: +SKIP
    """

    def __init__(self, *, min_lr: float = 1e-8, max_lr: float = 1.0, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: float | None = 4.0,
                 update_attr: bool = True) -> None:
        if mode not in LR_MODES:
            raise ValueError(f"`mode` must be one of {LR_MODES}. Received: mode={mode!r}")
        self.options = {"min_lr": min_lr, "max_lr": max_lr, "num_training": num_training_steps,
                        "mode": mode, "early_stop_threshold": early_stop_threshold,
                        "update_attr": update_attr}
        self.optimal_lr: Any = None

    def tune(self, tuner: Any, module: Any, data: dict) -> None:
        """Runs the sweep on the fit's data; called by ``Trainer.fit`` with a
        `kerastrainer.tuner.Tuner`."""
        self.optimal_lr = tuner.lr_find(
            module, data["train_data"], datamodule=data["datamodule"],
            batch_size=data["batch_size"], **self.options)


def finders(callbacks: list) -> list:
    """The finder callbacks among ``callbacks``, in the order they run (batch size first: the
    rate depends on it)."""
    return [c for c in callbacks if isinstance(c, BatchSizeFinder)] + \
        [c for c in callbacks if isinstance(c, LearningRateFinder)]
