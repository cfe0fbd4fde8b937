"""Learning-rate schedulers driven by the Trainer (Lightning's ``lr_scheduler`` dict, Keras objects).

For a schedule computed inside the compiled step every optimizer step, give the optimizer a
``keras.optimizers.schedules.LearningRateSchedule``; nothing here is needed. The schedulers below
run in Python between compiled calls: every ``frequency`` epochs, or (``interval="step"``) after
the compiled calls whose optimizer steps reach a multiple of ``frequency``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from kerastrainer.callbacks.monitor import check_mode, improved
from kerastrainer.loop_position import crossed_multiple


class ReduceLROnPlateau:
    """Multiplies the learning rate by ``factor`` when ``monitor`` stopped improving for ``patience``.

    Args:
        factor: the multiplier, in (0, 1).
        patience: checks without improvement before reducing.
        mode: ``"min"`` or ``"max"``.
        min_delta: improvements smaller than this do not count.
        cooldown: checks to wait after a reduction before counting again.
        min_lr: the learning rate never goes below this.

    Examples:
        >>> scheduler = ReduceLROnPlateau(factor=0.5, patience=2)
    """

    def __init__(self, *, factor: float = 0.1, patience: int = 10, mode: str = "min",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: `factor` must be in (0, 1). Received: factor={factor!r}")
        self.factor, self.patience, self.min_delta = factor, patience, min_delta
        self.mode = check_mode(mode, "ReduceLROnPlateau")
        self.cooldown, self.min_lr = cooldown, min_lr
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def step(self, value: float, optimizer) -> None:
        """Takes one check of the monitored ``value`` and lowers ``optimizer``'s rate if due."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
            return
        if self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                current = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                optimizer.learning_rate = np.float32(max(current * self.factor, self.min_lr))
                self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])


@dataclass
class Scheduler:
    """A learning-rate scheduler as ``configure_optimizer()`` gave it, with when it acts.

    Attributes:
        scheduler: a `ReduceLROnPlateau`, a callable ``(epoch_or_step, lr) -> lr``, or
            ``None`` (no scheduler: `step` does nothing).
        interval: ``"epoch"`` or ``"step"``.
        frequency: act every this many epochs or optimizer steps.
        monitor: the value a `ReduceLROnPlateau` watches.
    """

    scheduler: Any = None
    interval: str = "epoch"
    frequency: int = 1
    monitor: str = "val_loss"

    @classmethod
    def from_config(cls, config, owner: str) -> "Scheduler":
        """Validates an ``lr_scheduler`` entry: a scheduler, or a dict with ``scheduler`` and the
        optional ``interval``, ``frequency`` and ``monitor``.

        Raises:
            ValueError, TypeError: unknown keys, values out of range, or not a scheduler.
        """
        if not isinstance(config, dict):
            config = {"scheduler": config}
        unknown = set(config) - {"scheduler", "interval", "frequency", "monitor"}
        if unknown or "scheduler" not in config:
            raise ValueError(
                f"{owner}: `lr_scheduler` must be a scheduler or a dict with 'scheduler' and optional "
                f"'interval', 'frequency', 'monitor'. Received keys: {sorted(config)}")
        scheduler = config["scheduler"]
        if not (isinstance(scheduler, ReduceLROnPlateau) or callable(scheduler)):
            raise TypeError(
                f"{owner}: the scheduler must be a kt.lr.ReduceLROnPlateau or a callable(epoch, lr) -> "
                f"lr. Received: {scheduler!r}")
        interval = config.get("interval", "epoch")
        if interval not in ("epoch", "step"):
            raise ValueError(
                f"{owner}: `interval` must be 'epoch' or 'step'. Received: interval={interval!r}")
        frequency = config.get("frequency", 1)
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(
                f"{owner}: `frequency` must be an int >= 1. Received: frequency={frequency!r}")
        return cls(scheduler, interval, frequency, config.get("monitor", "val_loss"))

    def after_epoch(self, optimizer, epoch: int, monitored: Callable[[], float | None]) -> None:
        """Acts after ``epoch`` (from 0) ends when its interval is ``"epoch"`` and the epochs done
        are a multiple of its frequency. ``monitored()`` reads the value a `ReduceLROnPlateau`
        watches (``None``: not logged this epoch); nothing else calls it."""
        if self.scheduler is not None and self.interval == "epoch" and (epoch + 1) % self.frequency == 0:
            self._act(optimizer, epoch, monitored)

    def after_steps(self, optimizer, global_step: int, steps: int,
                    monitored: Callable[[], float | None]) -> None:
        """Acts when its interval is ``"step"`` and the ``steps`` optimizer steps that ended at
        ``global_step`` reached a multiple of its frequency (once, however many they reached: a
        compiled call of several steps is followed by one action, at its last step)."""
        if self.scheduler is not None and self.interval == "step" and crossed_multiple(
                global_step, steps, self.frequency):
            self._act(optimizer, global_step, monitored)

    def _act(self, optimizer, index: int, monitored) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            value = monitored()
            if value is not None:
                self.scheduler.step(value, optimizer)
            return
        current = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        # A NumPy value: TensorFlow keeps every distinct Python float it converts to a
        # tensor in a cache that never shrinks (memory would grow with every step).
        optimizer.learning_rate = np.float32(self.scheduler(index, current))

    def state_dict(self) -> dict:
        """The plateau scheduler's counters (a function has no state)."""
        if isinstance(self.scheduler, ReduceLROnPlateau):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state: dict) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau) and state:
            self.scheduler.load_state_dict(state)
