"""A run's results: logged values and metrics live in device variables; Python reads them when asked.

During a compiled step, ``module.log(...)``, the running loss, ``update_metrics`` and the step's scalar
outputs are written into ``tf.Variable`` accumulators (created once, on the first trace) by the
`StepRecorder` the compile site holds. Each compiled call marks its stage changed, and the first
reader of ``trainer.callback_metrics`` (a callback, the progress bar, a logger) pays for the
transfer: on one device a single one for all of a stage's values (``host_reads``). Nothing is read
per step otherwise.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.accumulators import (NUMPY_REDUCTIONS, StageState, clone_if_shared, renamed_if_taken,
                                       route_metrics)
from kerastrainer.checkpoint_io import flatten, nest
from kerastrainer.host_reads import StageReaders
from kerastrainer.label_checks import LABEL_COUNTS
from kerastrainer.log_names import LogKeys, check_names
from kerastrainer.recorder import StepRecorder
from kerastrainer.stages import EVALUATED, TRAIN, VAL, Stage


def scalar_from_hook(name: str, value: Any) -> float:
    """A value logged from a hook as a Python float (the caller is at a sync point already).

    Raises:
        ValueError: a value with more than one element.
    """
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64)
    if array.size != 1:
        raise ValueError(f"self.log({name!r}, value) needs a scalar value. Received shape {array.shape}.")
    return float(array.reshape(()))


class Results:
    """Holds a run's accumulators per stage and reads them lazily; keeps the values hooks log.

    The Trainer holds one as ``trainer.results`` and ``trainer.callback_metrics`` reads it. The
    compiled steps write the accumulators through ``recorder`` (a `StepRecorder`), which the
    Trainer hands to the compile site; ``TrainModule.log`` in a hook comes to `log_from_hook`.

    Args:
        strategy: the run's ``tf.distribute.Strategy`` (accumulators are created in its scope).
        agreement: the workers' `Agreement` (``None``
            or a solo one: a single worker).
        compile_reader: the compile site's ``CompiledSteps.compile_reader``, with which a
            single-device run reads a stage's values in one compiled call and one transfer (see
            `StageReaders`); ``None`` (``run_eagerly``): always plainly.
    """

    def __init__(self, *, strategy=None, agreement=None, compile_reader=None) -> None:
        self.strategy = strategy or tf.distribute.get_strategy()
        self.scope = self.strategy.scope
        self.agreement = agreement
        # Under MultiWorkerMirrored a read is a collective: values are read only in sync(), which
        # every worker calls at the same steps; in between, callers see the last synced values.
        self.synced_reads = agreement is not None and not agreement.solo
        self.stages: dict[str, StageState] = {}  # by Stage.name
        self.hook_values: dict[str, float] = {}
        self._fresh_hooks: set[str] = set()  # hook values logged since the last step row
        self._run_hooks: set[str] = set()  # hook values logged since the evaluation run began
        self.keys = LogKeys()
        self._values: dict[str, dict] = {}
        self._dirty: set[str] = set()
        self._taken_metrics: set[int] = set()
        self._pending: dict[str, np.ndarray] = {}  # restored values of variables not created yet
        # What the compiled steps write with (the compile site holds it): these accumulators.
        self.recorder = StepRecorder(stages=self.stages, keys=self.keys, hook_values=self.hook_values,
                                     pending=self._pending, dirty=self._dirty, strategy=self.strategy)
        several = self.synced_reads or self.strategy.num_replicas_in_sync != 1 or isinstance(
            self.strategy, tf.distribute.MirroredStrategy)
        self.readers = StageReaders(None if several else compile_reader)  # replicas: read one by one

    def configure(self, stages, make_metrics, make_weighted=None) -> None:
        """Creates the accumulators of each of ``stages`` once, with the metrics ``make_metrics()``
        returns (the module's ``configure_metrics``, updated without sample weights) and those
        ``make_weighted()`` returns (``configure_weighted_metrics``, updated with them); a stage
        configured already keeps its own."""
        for stage in stages:
            if stage.name not in self.stages:
                self._configure(stage, make_metrics, make_weighted)

    def _configure(self, stage: Stage, make_metrics, make_weighted) -> None:
        plain = route_metrics(make_metrics())
        names = {m.name if r is None else f"{r}_{m.name}" for r, m in plain}
        weighted = [] if make_weighted is None else renamed_if_taken(
            route_metrics(make_weighted(), "configure_weighted_metrics()"), names)
        pairs = plain + weighted
        with self.scope():
            self.stages[stage.name] = StageState(
                stage=stage, routes=[route for route, _ in pairs],
                weighted=[False] * len(plain) + [True] * len(weighted),
                metrics=clone_if_shared([metric for _, metric in pairs], self._taken_metrics),
                loss=keras.metrics.Mean(name="loss"),
                batch_idx=tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name=f"{stage.name}_batch_idx",
                                      synchronization=tf.VariableSynchronization.ON_READ,
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA),
            )
        # Made now rather than in the first trace: a variable created while tracing makes
        # tf.function trace the step a second time.
        self.stages[stage.name].outputs["loss"] = self.recorder.variable(0.0, f"{stage.name}/out/loss")
        for kind in LABEL_COUNTS:  # the label checks' counters (their classes are known once traced)
            self.stages[stage.name].counts[kind] = [
                self.recorder.variable(0.0, f"{stage.name}/count/{kind}", "sum"), None]

    # ----------------------------------------------------------------- hooks
    def log_from_hook(self, name, value, *, prog_bar, logger) -> None:
        """``TrainModule.log`` outside a compiled step (a hook or a callback, already at a sync
        point): the value is read now."""
        number = scalar_from_hook(name, value)
        if name not in self.hook_values:
            check_names(self.stages.values(), self.hook_values, keys=[name])
        self.hook_values[name] = number
        self._fresh_hooks.add(name)
        self._run_hooks.add(name)
        self.keys.remember([name], prog_bar=prog_bar, logger=logger)

    # ----------------------------------------------------------------- host side
    def reset(self, stage: Stage) -> None:
        """Starts a new epoch or evaluation run for ``stage``: zeroes its accumulators."""
        self.stages[stage.name].reset()
        self._values.pop(stage.name, None)
        self._dirty.add(stage.name)

    def start_run(self, stage: Stage, datasets) -> None:
        """A validation or test run over ``datasets`` (their stages, one per dataset) begins: they
        are zeroed, and values an earlier run of ``stage`` left for other datasets are dropped, so
        that none is reported as this run's."""
        names = {s.name for s in datasets}
        self._run_hooks = set()
        for state in list(self.stages.values()):
            if state.stage.entry == stage.entry and state.stage.name not in names and (
                    state.stage.name in self._values or state.stage.name in self._dirty):
                self.clear(state.stage)
        for dataset in datasets:
            self.reset(dataset)

    def stage_metrics(self, stage: Stage) -> dict:
        """``stage``'s running loss and ``configure_metrics()`` objects by their names (``loss``,
        ``acc``, ``<output>_acc``), before the stage prefix; empty before it runs."""
        state = self.stages.get(stage.name)
        if state is None:
            return {}
        return {"loss": state.loss, **dict(zip(state.metric_names(), state.metrics))}

    def start_epoch(self, *, validates: bool) -> None:
        """A new training epoch: its accumulators start from zero. In an epoch that does not
        validate, the last validation's values (``val_*``, from hooks too) are dropped, so that no
        monitor acts on them twice and ``trainer.history`` holds ``None`` for them."""
        self.reset(TRAIN)
        if not validates:
            self.drop_validation()

    def drop_validation(self) -> None:
        """Forgets the last validation's values (``val_*``, from hooks too, every validation
        dataset's): an epoch that did not validate reports none."""
        for state in [s for s in self.stages.values() if s.stage.entry == VAL.entry]:
            self.clear(state.stage)
        for key in [k for k in self.hook_values if k.startswith(VAL.prefix)]:
            del self.hook_values[key]

    def clear(self, *stages: Stage) -> None:
        """Forgets ``stages``' results (after the sanity check, which must not report values)."""
        for stage in stages:
            self.reset(stage)
            self._dirty.discard(stage.name)

    @property
    def hidden_keys(self) -> set:
        """The keys logged with ``logger=False`` (the loggers skip them)."""
        return self.keys.hidden

    def run_hook_values(self) -> dict:
        """The values hooks and callbacks logged since the current (or last) validation or test
        run began: what that run reports besides its own loss and metrics (a training callback's
        ``ThroughputMonitor`` or learning-rate values are not its results)."""
        return {name: self.hook_values[name] for name in self._run_hooks if name in self.hook_values}

    def take_fresh_hook_values(self) -> dict:
        """The values hooks and callbacks logged since the last call (a step row of the loggers
        holds them, at the step they were logged: ``LearningRateMonitor``, ``ThroughputMonitor``)."""
        fresh = {name: self.hook_values[name] for name in self._fresh_hooks if name in self.hook_values}
        self._fresh_hooks.clear()
        return fresh

    def read(self, *stages: Stage) -> dict:
        """Returns the values of ``stages`` (one, or each of several datasets') as Python floats,
        reading the device only when stale."""
        values: dict = {}
        for stage in stages:
            if stage.name in self._dirty and not self.synced_reads:
                self._read(stage.name)
            values.update(self._values.get(stage.name, {}))
        return values

    def _read(self, stage: str) -> None:
        values = self.readers.read(self.stages[stage])
        self._values[stage] = self.stages[stage].read(self._combine) if values is None else values
        self._dirty.discard(stage)

    def _combine(self, variable, how: str, sync_dist: bool) -> float:
        """One accumulator's value over this process's replicas, and over all workers when
        ``sync_dist`` (``how``: sum, mean, max or min, the ``reduce_fx`` of the entry)."""
        over_workers = sync_dist and self.synced_reads
        if how in ("sum", "mean") and (over_workers or not self.synced_reads):
            return float(variable.numpy())  # the variable's own aggregation (a collective if needed)
        parts = [np.asarray(part.numpy(), np.float64)
                 for part in self.strategy.experimental_local_results(variable)]
        local = float(NUMPY_REDUCTIONS[how](parts))
        if over_workers:  # max or min over workers: every replica's local value, gathered
            local = float(NUMPY_REDUCTIONS[how](self.agreement.gather([local])))
        return local

    def sync(self) -> None:
        """With ``synced_reads``, reads every stale stage now (the only place values are read then:
        every worker calls it at the same steps). Otherwise nothing: reads happen when asked."""
        if not self.synced_reads:
            return
        for stage in [s for s in self.stages if s in self._dirty]:
            self._read(stage)

    def variables(self) -> dict:
        """Every accumulator by a stable key, for checkpoints."""
        found = {}
        for stage, state in self.stages.items():
            found[f"{stage}/batch_idx"] = state.batch_idx
            for i, var in enumerate(state.loss.variables):
                found[f"{stage}/loss/{i}"] = var
            for name, metric in zip(state.metric_names(), state.metrics):
                for i, var in enumerate(metric.variables):
                    found[f"{stage}/metrics/{name}/{i}"] = var
            for name, entry in state.entries.items():
                for part in ("last", "total", "weight"):
                    found[f"{stage}/log/{name}/{part}"] = getattr(entry, part)
            for key, var in state.outputs.items():
                found[f"{stage}/out/{key}"] = var
        return found

    def state_dict(self) -> dict:
        """The accumulators' values (a resumed epoch continues its running means exactly)."""
        return nest({key: np.asarray(var.numpy()) for key, var in self.variables().items()})

    def load_state_dict(self, state: dict) -> None:
        """Assigns saved values; those of variables created at the first trace wait until then."""
        existing = self.variables()
        for key, value in flatten(state).items():
            if key in existing:
                existing[key].assign(value)
            else:
                self._pending[key] = np.asarray(value)
        self._dirty.update(self.stages)

    def callback_metrics(self) -> dict:
        """Every stage's values, then the values logged from hooks, as Python numbers."""
        merged: dict = {}
        order = [stage.entry for stage in EVALUATED]  # training, validation (dataset 0, 1, ...), test
        for state in sorted(self.stages.values(),
                            key=lambda s: (order.index(s.stage.entry), s.stage.dataloader_idx or 0)):
            merged.update(self.read(state.stage))
        merged.update(self.hook_values)
        return merged

    def logged_metrics(self) -> dict:
        """`callback_metrics` without the values logged with ``logger=False``."""
        return {k: v for k, v in self.callback_metrics().items() if k not in self.hidden_keys}

    def progress_bar_metrics(self) -> dict:
        """Losses, metrics and the values logged with ``prog_bar=True``."""
        return {k: v for k, v in self.callback_metrics().items()
                if k in self.keys.prog_bar or k not in self.keys.user}
