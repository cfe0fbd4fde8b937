"""One stage's device-side accumulators: the running loss, its metrics and its ``self.log`` values."""

from __future__ import annotations

from typing import Callable

import math
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.stages import Stage

REDUCTIONS = ("mean", "sum", "max", "min")
INITIAL = {"mean": 0.0, "sum": 0.0, "max": -math.inf, "min": math.inf}
NUMPY_REDUCTIONS: dict[str, Callable] = {"mean": np.mean, "sum": np.sum, "max": np.max,
                                          "min": np.min}


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
    routes: list = field(default_factory=list)  # per metric: the model output it measures, or None
    counts: dict = field(default_factory=dict)  # label checks: kind -> [counter variable, classes]
    weighted: list = field(default_factory=list)  # per metric: it takes the sample weights

    def metric_names(self) -> list:
        """Each metric's name without the stage prefix: ``acc``, or ``<output>_acc`` for a metric of
        one output of several (Keras's names)."""
        routes = self.routes or [None] * len(self.metrics)
        return [m.name if r is None else f"{r}_{m.name}" for m, r in zip(self.metrics, routes)]

    def reset(self) -> None:
        self.loss.reset_state()
        for metric in self.metrics:
            metric.reset_state()
        for entry in self.entries.values():
            entry.total.assign(INITIAL[entry.reduce_fx])
            entry.weight.assign(0.0)
        self.batch_idx.assign(0)
        for counter, _ in self.counts.values():
            counter.assign(0.0)

    def builtin_keys(self) -> set:
        """The keys of the stage's own values: its loss and its metrics (``val_loss``, ``val_acc``)."""
        prefix, suffix = self.stage.prefix, self.stage.suffix
        return {prefix + n + suffix for n in ["loss", *self.metric_names()]}

    def logged_keys(self) -> set:
        """The keys its ``self.log`` values are reported under."""
        return {key + self.stage.suffix for name, entry in self.entries.items() for key in entry.keys(name)}

    def read(self, combine) -> dict:
        """The stage's values as Python numbers; ``combine(variable, how, sync_dist)`` reads one
        accumulator (each read its own transfer: the path for distributed runs)."""
        entries = []
        for entry in self.entries.values():
            sync, how = entry.sync_dist, entry.reduce_fx
            last = combine(entry.last, how, sync) if entry.on_step else None
            weight = combine(entry.weight, "sum", sync) if entry.on_epoch else 0.0
            total = combine(entry.total, "sum" if how == "mean" else how, sync) if weight > 0 else None
            entries.append((last, total, weight))
        return self.values_from(self.loss.result() if self.has_loss else None,
                                [metric.result() for metric in self.metrics], entries)

    def device_values(self) -> list:
        """What `values_from` needs, as tensors: called inside one compiled reader, so that a
        single-device run reads all of a stage's values in one transfer."""
        return [self.loss.result() if self.has_loss else tf.zeros([]),
                [metric.result() for metric in self.metrics],
                [(e.last.read_value(), e.total.read_value(), e.weight.read_value())
                 for e in self.entries.values()]]

    def values_from(self, loss, results, entries) -> dict:
        """The stage's values (``val_loss``, ``val_acc``, ``self.log`` names) from what was read: the
        running loss, each metric's result, and each entry's ``(last, total, weight)``."""
        prefix = self.stage.prefix
        values: dict = {}
        if self.has_loss:
            values[prefix + "loss"] = float(loss)
        for name, result in zip(self.metric_names(), results):
            _put_result(values, prefix + name, result)
        for (name, entry), (last, total, weight) in zip(self.entries.items(), entries):
            step_key = entry.keys(name)[0]
            epoch_key = entry.keys(name)[-1]
            if entry.on_step:
                values[step_key] = float(last)
            if entry.on_epoch and weight > 0:
                values[epoch_key] = float(total) / float(weight) if entry.reduce_fx == "mean" else float(total)
        suffix = self.stage.suffix  # after the _step/_epoch of a name, as Lightning puts it
        return {key + suffix: value for key, value in values.items()} if suffix else values


def _put_result(values: dict, name: str, result) -> None:
    if isinstance(result, dict):
        for key, value in result.items():
            _put_result(values, f"{name}_{key}", value)
        return
    array = np.asarray(result)
    values[name] = float(array) if array.size == 1 else array


def renamed_if_taken(weighted_pairs: list, names: set) -> list:
    """Weighted metrics whose name an unweighted one has are renamed ``weighted_<name>``, as
    Keras's ``compile`` names them (``accuracy`` and ``weighted_accuracy``)."""
    renamed = []
    for route, metric in weighted_pairs:
        key = metric.name if route is None else f"{route}_{metric.name}"
        if key in names:
            metric = type(metric).from_config({**metric.get_config(), "name": f"weighted_{metric.name}"})
        renamed.append((route, metric))
    return renamed


def clone_if_shared(metrics: list, taken: set) -> list:
    """Each stage needs its own metric state: clone objects another stage already uses."""
    fresh = []
    for metric in metrics:
        if id(metric) in taken:
            metric = type(metric).from_config(metric.get_config())
        taken.add(id(metric))
        fresh.append(metric)
    return fresh


def route_metrics(configured, where: str = "configure_metrics()") -> list:
    """``[(output or None, metric), ...]`` from what ``configure_metrics()`` returned: a list of
    metrics (each measures the whole prediction), or a dict mapping an output (a key of dict
    outputs, an index of list outputs) to a metric or a list of them.

    Raises:
        TypeError: anything that is not a Keras metric.
        ValueError: a metric named ``loss`` for the whole prediction (the running loss's name).
    """
    if configured is None:
        return []
    if isinstance(configured, dict):
        pairs = [(key, m) for key, ms in configured.items()
                 for m in (ms if isinstance(ms, (list, tuple)) else [ms])]
    else:
        pairs = [(None, m) for m in configured]
    for route, metric in pairs:
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                f"{where} must return a list (or a dict of lists by output) of keras.metrics.Metric "
                f"objects. Received an item {metric!r} of type {type(metric).__name__}.")
        if metric.name == "loss" and route is None:
            raise ValueError(
                f"A metric from {where} is named 'loss', which is the name of the running loss. Give "
                "it another name, e.g. name='mse'.")
    return pairs


# do_not_convert: plain Python over nests, no user code (AutoGraph rewriting it cost 0.1 s a process)
@tf.autograph.experimental.do_not_convert
def pick(value, route, what: str):
    """The part of ``value`` (targets, predictions or sample weights) for one output."""
    if route is None or value is None:
        return value
    if isinstance(value, dict) and route in value:
        return value[route]
    if isinstance(value, (list, tuple)) and isinstance(route, int) and route < len(value):
        return value[route]
    if what == "sample weights" and not isinstance(value, (dict, list, tuple)):
        return value  # one sample weight for every output, as in Keras
    keys = sorted(value) if isinstance(value, dict) else list(range(len(value))) if isinstance(
        value, (list, tuple)) else "a single tensor"
    raise ValueError(f"configure_metrics() has metrics for output {route!r}, but the {what} have "
                     f"outputs {keys}. Key the dict by the model's output names (or list indices).")
