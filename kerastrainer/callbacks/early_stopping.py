"""EarlyStopping: stop training when a monitored value stops improving."""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
import math
import numbers
import os
import warnings

from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.monitor import check_mode, improved, monitored_value
from kerastrainer.checkpoint_io import atomic_write_text
from kerastrainer.plot import RESTORED_FILE

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class EarlyStopping(Callback):
    """Sets ``trainer.should_stop`` when ``monitor`` has not improved for ``patience`` checks.

    It runs at the end of every training epoch, after validation and after the module's own hooks
    (``check_on_train_epoch_end=False``: after every validation run instead, mid-epoch ones too).

    Args:
        monitor: the key in ``trainer.callback_metrics`` (``"val_loss"``, ``"val_acc"``, ...).
        min_delta: an improvement smaller than this does not count.
        patience: epochs without improvement before stopping.
        mode: ``"min"`` when lower is better, ``"max"`` when higher is better.
        stopping_threshold: stop as soon as the value reaches this.
        divergence_threshold: stop as soon as the value is worse than this.
        check_finite: stop when the value becomes NaN or infinite.
        restore_best_weights: put back the weights of the best epoch when training ends (with a
            logger, ``restored_best.json`` in the run folder says which; `kt.plot_metrics`
            marks it).
        verbose: print why training stopped.
        baseline: the value to beat (Keras's): checks that do not improve on it count against
            ``patience`` from the start.
        start_from_epoch: ignore the first this many epochs (Keras's: a warm-up).
        strict: a ``monitor`` that is never logged is an error; ``False``: a warning, once, and
            the callback does nothing (Lightning's).
        check_on_train_epoch_end: check at the end of each training epoch (default), or, when
            ``False``, at the end of each validation run.

    Raises:
        ValueError: a bad ``mode``, ``patience`` or ``start_from_epoch``, or (during fit, with
            ``strict``) a ``monitor`` that is never logged.

    Examples:
        >>> stopper = EarlyStopping(monitor="val_acc", mode="max", patience=5)
    """

    is_monitor = True

    def __init__(self, *, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 3,
                 mode: str = "min", stopping_threshold: float | None = None,
                 divergence_threshold: float | None = None, check_finite: bool = True,
                 restore_best_weights: bool = False, verbose: bool = False,
                 baseline: float | None = None, start_from_epoch: int = 0, strict: bool = True,
                 check_on_train_epoch_end: bool = True) -> None:
        self.mode = check_mode(mode, "EarlyStopping")
        if isinstance(start_from_epoch, bool) or not isinstance(start_from_epoch, int) or \
                start_from_epoch < 0:
            raise ValueError("EarlyStopping: `start_from_epoch` must be an int >= 0. Received: "
                             f"start_from_epoch={start_from_epoch!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: `patience` must be an int >= 0. Received: patience={patience!r}")
        for name, value in (("min_delta", min_delta), ("stopping_threshold", stopping_threshold),
                            ("divergence_threshold", divergence_threshold),
                            ("baseline", baseline)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise TypeError(f"EarlyStopping: `{name}` must be a number. Received: {name}={value!r}"
                                + (f" (a str: write {name}={value.strip()})"
                                   if isinstance(value, str) else ""))
        if not min_delta >= 0:
            raise ValueError(f"EarlyStopping: `min_delta` must be >= 0. Received: min_delta={min_delta!r}")
        if not isinstance(monitor, str) or not monitor:
            raise TypeError("EarlyStopping: `monitor` must be the name of a logged value, e.g. "
                            f"'val_loss'. Received: monitor={monitor!r}")
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.patience = patience
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.check_finite = check_finite
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = start_from_epoch
        self.strict = bool(strict)
        self.check_on_train_epoch_end = bool(check_on_train_epoch_end)
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = (self.baseline if self.baseline is not None
                           else math.inf if self.mode == "min" else -math.inf)
        self._warned = False
        self.stopping_reason = ""
        self.best_epoch: int | None = None  # the epoch of best_score
        self._best_weights = None

    @property
    def state_key(self) -> str:
        return f"EarlyStopping{{'monitor': '{self.monitor}', 'mode': '{self.mode}'}}"

    def state_dict(self) -> dict:
        return {"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch,
                "best_score": self.best_score, "patience": self.patience,
                "best_epoch": -1 if self.best_epoch is None else self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.wait_count = int(state_dict["wait_count"])
        self.stopped_epoch = int(state_dict["stopped_epoch"])
        self.best_score = float(state_dict["best_score"])
        self.patience = int(state_dict["patience"])
        best_epoch = int(state_dict.get("best_epoch", -1))  # absent from older checkpoints
        self.best_epoch = None if best_epoch < 0 else best_epoch

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self.check_on_train_epoch_end:
            self._check(trainer, module)

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        if not self.check_on_train_epoch_end:
            self._check(trainer, module)

    def _current(self, trainer: Trainer) -> float | None:
        try:
            return monitored_value(trainer.callback_metrics, self.monitor, "EarlyStopping",
                                   validates=trainer.num_val_batches != 0)
        except ValueError as error:
            if self.strict:
                raise
            if not self._warned:
                warnings.warn(f"{error} (strict=False: early stopping is off.)", stacklevel=2)
                self._warned = True
            return None

    def _check(self, trainer: Trainer, module: TrainModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch < self.start_from_epoch:
            return
        current = self._current(trainer)
        if current is None:
            return
        is_best = math.isfinite(current) and improved(current, self.best_score, self.mode,
                                                      self.min_delta)
        reason = self._evaluate(current)
        if is_best:
            self.best_epoch = trainer.current_epoch
        if is_best and self.restore_best_weights:
            self._best_weights = module.get_weights()
        if reason:
            self.stopping_reason = reason
            self.stopped_epoch = trainer.current_epoch
            trainer.should_stop = True
            if self.verbose:
                print(f"EarlyStopping: {reason}")

    def _evaluate(self, current: float) -> str:
        worse = (lambda a, b: a > b) if self.mode == "min" else (lambda a, b: a < b)
        if self.check_finite and not math.isfinite(current):
            return f"{self.monitor} = {current} is not finite."
        if self.stopping_threshold is not None and not worse(current, self.stopping_threshold):
            return f"{self.monitor} = {current:.6g} reached the stopping threshold {self.stopping_threshold}."
        if self.divergence_threshold is not None and worse(current, self.divergence_threshold):
            return (f"{self.monitor} = {current:.6g} is worse than the divergence threshold "
                    f"{self.divergence_threshold}.")
        if improved(current, self.best_score, self.mode, self.min_delta):
            self.best_score = current
            self.wait_count = 0
            return ""
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return (f"{self.monitor} did not improve by more than {self.min_delta} for "
                    f"{self.wait_count} epochs; best: {self.best_score:.6g}.")
        return ""

    def on_train_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            module.set_weights(self._best_weights)
            if trainer.loggers and trainer.is_global_zero:  # for kt.plot_metrics to mark it
                atomic_write_text(os.path.join(trainer.log_dir, RESTORED_FILE), json.dumps(
                    {"epoch": self.best_epoch, "monitor": self.monitor, "score": self.best_score}))
