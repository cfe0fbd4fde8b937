"""The learning-rate range test (Smith, 2015): train a few steps while the rate grows, watch the loss."""

from __future__ import annotations

import io
import math
import os
import warnings
from typing import Any

import numpy as np

from kerastrainer.callbacks.base import Callback
from kerastrainer.checkpoint_io import atomic_write_bytes

_BETA = 0.98  # the smoothing of the loss curve (an exponential moving average, bias-corrected)


class LRFinder:
    """The result of [`Tuner.lr_find`][kerastrainer.tuner.Tuner.lr_find].

    Attributes:
        results: ``{"lr": [...], "loss": [...]}``: the rate of each step and the smoothed training
            loss after it.
        mode: ``"exponential"`` or ``"linear"``: how the rate grew.
        min_lr, max_lr, num_training: the sweep's range and its number of steps.
    """

    def __init__(self, *, mode: str, min_lr: float, max_lr: float, num_training: int) -> None:
        self.mode, self.min_lr, self.max_lr, self.num_training = mode, min_lr, max_lr, num_training
        self.results: dict[str, list[float]] = {"lr": [], "loss": []}
        self._optimal_idx: int | None = None

    def lr_at(self, step: int) -> float:
        """The rate of step ``step`` (0-based): ``min_lr`` at the first, ``max_lr`` at the last."""
        fraction = step / max(self.num_training - 1, 1)
        if self.mode == "linear":
            return self.min_lr + fraction * (self.max_lr - self.min_lr)
        return self.min_lr * (self.max_lr / self.min_lr) ** fraction

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The rate where the smoothed loss falls fastest: the most negative slope of the curve
        `plot` draws (against the log of the rate for an exponential sweep), leaving out the first
        ``skip_begin`` and last ``skip_end`` steps and any non-finite loss.

        Returns:
            The rate, or ``None`` (with a warning) when fewer than two points remain.
        """
        end = len(self.results["loss"]) - skip_end
        losses = np.asarray(self.results["loss"][skip_begin:end], dtype=np.float64)
        lrs = np.asarray(self.results["lr"][skip_begin:end], dtype=np.float64)
        kept = np.flatnonzero(np.isfinite(losses))
        if kept.size < 2:
            warnings.warn(
                f"lr_find: too few points for a suggestion ({len(self.results['loss'])} steps ran, "
                f"{kept.size} remain after skip_begin={skip_begin}, skip_end={skip_end}). Raise "
                "num_training, use more training data, or raise early_stop_threshold.",
                UserWarning, stacklevel=2)
            self._optimal_idx = None
            return None
        # The slope on the plot's axis: against log(rate) for an exponential sweep. Against the
        # rate itself, the tiny steps between the first rates magnify their noise into the
        # "steepest" slope (a far too small rate).
        axis = np.log(lrs[kept]) if self.mode == "exponential" else lrs[kept]
        slopes = np.gradient(losses[kept], axis)
        self._optimal_idx = int(kept[int(np.argmin(slopes))]) + skip_begin
        return self.results["lr"][self._optimal_idx]

    def plot(self, path: str | os.PathLike | None = None, *, suggest: bool = True) -> Any:
        """Draws loss against rate (a log axis for an exponential sweep).

        Args:
            path: also write the figure there as a PNG (atomically).
            suggest: mark the `suggestion` on the curve.

        Returns:
            The matplotlib figure.

        Raises:
            ModuleNotFoundError: matplotlib is missing (``pip install kerastrainer[plot]``).
        """
        from kerastrainer.plot import load_pyplot

        plt = load_pyplot("LRFinder.plot")
        figure, axis = plt.subplots(figsize=(6, 4))
        lrs, losses = self.results["lr"], self.results["loss"]
        axis.plot(lrs, losses, label="smoothed training loss")
        if self.mode == "exponential":
            axis.set_xscale("log")
        if suggest:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # no point to mark: the plot still shows the curve
                best = self.suggestion()
            if best is not None and self._optimal_idx is not None:
                axis.plot(best, losses[self._optimal_idx], "o", color="red", markersize=8,
                          label=f"suggestion: {best:.2e}")
        axis.set_xlabel("learning rate")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        if path is not None:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100)
            atomic_write_bytes(os.fspath(path), buffer.getvalue())
        return figure


class LRSweep(Callback):
    """Sets each step's rate before it runs and records the smoothed loss after it; stops the
    run when the loss diverges (above ``early_stop_threshold`` times the best so far, or not
    finite). The loss is read once per step: the sweep needs each one."""

    def __init__(self, finder: LRFinder, *, early_stop_threshold: float | None, snapshot) -> None:
        self.finder, self.threshold, self.snapshot = finder, early_stop_threshold, snapshot
        self._average = 0.0
        self._best = math.inf

    def on_fit_start(self, trainer, module) -> None:
        self.snapshot.capture()  # an unbuilt module is built now: its initial weights
        try:
            module.optimizer.learning_rate = self.finder.min_lr
        except (TypeError, AttributeError, ValueError) as error:
            optimizer = module.optimizer
            raise ValueError(
                f"lr_find sets the learning rate of each step, but {type(module).__name__}."
                f"configure_optimizer() returned {type(optimizer).__name__} whose learning_rate "
                "cannot be set (a keras LearningRateSchedule, or several optimizers). Return an "
                "optimizer with a number as learning_rate for the sweep, and put a schedule in "
                "{'optimizer': ..., 'lr_scheduler': ...} instead. Received: "
                f"learning_rate={getattr(optimizer, '_learning_rate', optimizer)!r}") from error

    def on_train_batch_start(self, trainer, module, batch_idx) -> None:
        lr = self.finder.lr_at(len(self.finder.results["lr"]))
        module.optimizer.learning_rate = lr
        self.finder.results["lr"].append(lr)

    def on_train_batch_end(self, trainer, module, outputs, batch_idx) -> None:
        step = len(self.finder.results["loss"])
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        self._average = _BETA * self._average + (1 - _BETA) * loss
        smoothed = self._average / (1 - _BETA ** (step + 1))
        self.finder.results["loss"].append(smoothed)
        if not math.isfinite(smoothed):
            trainer.should_stop = True
            return
        if self.threshold is not None and step > 1 and smoothed > self.threshold * self._best:
            trainer.should_stop = True  # diverged: the rest of the range teaches nothing
        self._best = min(self._best, smoothed)
