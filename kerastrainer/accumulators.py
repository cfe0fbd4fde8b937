"""One stage's device-side accumulators: the running loss, its metrics and its ``self.log`` values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.stages import Stage

REDUCTIONS = ("mean", "sum", "max", "min")
INITIAL = {"mean": 0.0, "sum": 0.0, "max": -math.inf, "min": math.inf}
NUMPY_REDUCTIONS = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min}


@dataclass
class LogEntry:
    """One ``self.log`` name of one stage: its options and its three accumulators."""

    on_step: bool
    on_epoch: bool
    prog_bar: bool
    logger: bool
    reduce_fx: str
    sync_dist: bool
    last: tf.Variable
    total: tf.Variable
    weight: tf.Variable

    def keys(self, name: str) -> list:
        """The keys ``name`` is reported under: itself, or ``<name>_step`` and ``<name>_epoch``."""
        return [f"{name}_step", f"{name}_epoch"] if self.on_step and self.on_epoch else [name]


@dataclass
class StageState:
    """The device-side accumulators of one stage (training, validation or test)."""

    stage: Stage
    metrics: list
    loss: keras.metrics.Mean
    batch_idx: tf.Variable
    entries: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    recorded: set = field(default_factory=set)  # the output keys a traced step really returns
    has_loss: bool = False

    def reset(self) -> None:
        self.loss.reset_state()
        for metric in self.metrics:
            metric.reset_state()
        for entry in self.entries.values():
            entry.total.assign(INITIAL[entry.reduce_fx])
            entry.weight.assign(0.0)
        self.batch_idx.assign(0)

    def builtin_keys(self) -> set:
        """The keys of the stage's own values: its loss and its metrics (``val_loss``, ``val_acc``)."""
        return {self.stage.prefix + "loss"} | {self.stage.prefix + m.name for m in self.metrics}

    def logged_keys(self) -> set:
        """The keys its ``self.log`` values are reported under."""
        return {key for name, entry in self.entries.items() for key in entry.keys(name)}

    def read(self, combine) -> dict:
        """The stage's values as Python numbers; ``combine(variable, how, sync_dist)`` reads one."""
        prefix = self.stage.prefix
        values: dict = {}
        if self.has_loss:
            values[prefix + "loss"] = float(self.loss.result())
        for metric in self.metrics:
            _put_result(values, prefix + metric.name, metric.result())
        for name, entry in self.entries.items():
            step_key, epoch_key = entry.keys(name)[0], entry.keys(name)[-1]
            sync, how = entry.sync_dist, entry.reduce_fx
            if entry.on_step:
                values[step_key] = combine(entry.last, how, sync)
            weight = combine(entry.weight, "sum", sync) if entry.on_epoch else 0.0
            if weight > 0:
                total = combine(entry.total, "sum" if how == "mean" else how, sync)
                values[epoch_key] = total / weight if how == "mean" else total
        return values


def _put_result(values: dict, name: str, result) -> None:
    if isinstance(result, dict):
        for key, value in result.items():
            _put_result(values, f"{name}_{key}", value)
        return
    array = np.asarray(result)
    values[name] = float(array) if array.size == 1 else array


def clone_if_shared(metrics: list, taken: set) -> list:
    """Each stage needs its own metric state: clone objects another stage already uses."""
    fresh = []
    for metric in metrics:
        if id(metric) in taken:
            metric = type(metric).from_config(metric.get_config())
        taken.add(id(metric))
        fresh.append(metric)
    return fresh
