"""A run's results: logged values and metrics live in device variables; Python reads them when asked.

During a compiled step, ``module.log(...)``, the running loss, ``update_metrics`` and the step's scalar
outputs are written into ``tf.Variable`` accumulators (created once, on the first trace). The trainer
marks a stage dirty after each compiled call, and the first reader of ``trainer.callback_metrics``
(a callback, the progress bar, a logger) pays for the transfer: on one device a single one for all
of a stage's values (``host_reads``). Nothing is read per step otherwise.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.accumulators import (INITIAL, NUMPY_REDUCTIONS, REDUCTIONS, LogEntry, StageState,
                                       clone_if_shared, pick, route_metrics)
from kerastrainer.checkpoint_io import flatten, nest
from kerastrainer.host_reads import StageReaders
from kerastrainer.log_names import check_names, is_text
from kerastrainer.refusals import refusal
from kerastrainer.stages import EVALUATED, TRAIN, VAL, Stage


class Results:
    """Collects ``self.log`` calls, metrics and losses per stage, and reads them lazily.

    The Trainer holds one as ``trainer.results``; ``TrainModule.log`` and ``update_metrics`` write
    into it, and ``trainer.callback_metrics`` reads it.

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
        self.prog_bar_keys: set[str] = set()
        self.hidden_keys: set[str] = set()
        self.user_keys: set[str] = set()
        # Per thread: MirroredStrategy traces each replica's step in its own thread.
        self._local = threading.local()
        self._values: dict[str, dict] = {}
        self._dirty: set[str] = set()
        self._taken_metrics: set[int] = set()
        self._pending: dict[str, np.ndarray] = {}  # restored values of variables not created yet
        several = self.synced_reads or self.strategy.num_replicas_in_sync != 1 or isinstance(
            self.strategy, tf.distribute.MirroredStrategy)
        self.readers = StageReaders(None if several else compile_reader)  # replicas: read one by one

    def configure(self, stages, make_metrics) -> None:
        """Creates the accumulators of each of ``stages`` once, with the metrics ``make_metrics()``
        returns (the module's ``configure_metrics``); a stage configured already keeps its own."""
        for stage in stages:
            if stage.name not in self.stages:
                self._configure(stage, make_metrics)

    def _configure(self, stage: Stage, make_metrics) -> None:
        pairs = route_metrics(make_metrics())
        with self.scope():
            self.stages[stage.name] = StageState(
                stage=stage, routes=[route for route, _ in pairs],
                metrics=clone_if_shared([metric for _, metric in pairs], self._taken_metrics),
                loss=keras.metrics.Mean(name="loss"),
                batch_idx=tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name=f"{stage.name}_batch_idx",
                                      synchronization=tf.VariableSynchronization.ON_READ,
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA),
            )
        # Made now rather than in the first trace: a variable created while tracing makes
        # tf.function trace the step a second time.
        self.stages[stage.name].outputs["loss"] = self._variable(0.0, f"{stage.name}/out/loss")

    # ----------------------------------------------------------------- inside compiled steps
    @property
    def _recording(self) -> Any:  # (stage state, batch size) while a step is traced, else None
        return getattr(self._local, "recording", None)

    @_recording.setter
    def _recording(self, value) -> None:
        self._local.recording = value

    @contextlib.contextmanager
    def recording(self, stage: Stage, batch_size):
        """Routes ``module.log`` / ``update_metrics`` calls made while tracing to ``stage``."""
        previous = self._recording
        self._recording = (self.stages[stage.name], batch_size)
        try:
            yield self.stages[stage.name]
        finally:
            self._recording = previous
        check_names(self.stages.values(), self.hook_values, self.stages[stage.name])  # all known now

    def _variable(self, initial: float, key: str, aggregation="mean") -> tf.Variable:
        def create(*_):
            # init_scope lifts creation out of the function being traced, so the variable is
            # created once, eagerly, even when the first trace happens inside a while loop or an
            # XLA-compiled step. A value restored from a checkpoint before the first trace is used
            # as the initial value. Under a distribution strategy every replica updates its own
            # copy (no collective per step); a read from the host combines them (see _combine).
            value = self._pending.pop(key, initial)
            with tf.init_scope(), self.scope():
                return tf.Variable(
                    value, dtype=tf.float32, trainable=False, name=key.replace("/", "_"),
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=(tf.VariableAggregation.SUM if aggregation == "sum"
                                 else tf.VariableAggregation.MEAN))

        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            # first logged inside strategy.run: the replicas meet and one of them creates it
            return tf.distribute.get_replica_context().merge_call(create)
        return create()

    def log(self, name, value, *, on_step, on_epoch, prog_bar, logger, reduce_fx,
            sync_dist=False) -> None:
        """Implements ``TrainModule.log`` (see there)."""
        if not isinstance(name, str) or not name:
            raise refusal(TypeError(
                f"self.log() needs a non-empty string name. Received: name={name!r}"))
        if is_text(value):
            raise refusal(TypeError(
                f"self.log({name!r}, value) needs a number or a numeric tensor, not text. "
                f"Received: value={value!r}. Log a number (print text from a hook)."))
        if reduce_fx not in REDUCTIONS:
            raise refusal(ValueError(
                f"self.log({name!r}, ...) got an unknown reduce_fx. Use one of {REDUCTIONS}. "
                f"Received: reduce_fx={reduce_fx!r}"
            ))
        if self._recording is None:
            self._log_from_hook(name, value, prog_bar=prog_bar, logger=logger)
            return
        state, batch_size = self._recording
        stage = state.stage.name
        on_step = (state.stage is TRAIN) if on_step is None else bool(on_step)
        on_epoch = (state.stage is not TRAIN) if on_epoch is None else bool(on_epoch)
        value = tf.cast(tf.convert_to_tensor(value), tf.float32)
        if value.shape.rank not in (None, 0) and value.shape.num_elements() != 1:
            raise refusal(ValueError(
                f"self.log({name!r}, value) needs a scalar value. Received a tensor of shape "
                f"{tuple(value.shape)}: reduce it first, e.g. keras.ops.mean(value)."
            ))
        value = tf.reshape(value, [])
        entry = state.entries.get(name)
        if entry is None:
            entry = LogEntry(
                on_step, on_epoch, bool(prog_bar), bool(logger), reduce_fx, bool(sync_dist),
                last=self._variable(0.0, f"{stage}/log/{name}/last",
                                    "sum" if reduce_fx == "sum" else "mean"),
                total=self._variable(INITIAL[reduce_fx], f"{stage}/log/{name}/total",
                                     "sum" if reduce_fx in ("mean", "sum") else "mean"),
                weight=self._variable(0.0, f"{stage}/log/{name}/weight", "sum"),
            )
            state.entries[name] = entry
            self._remember_keys(name, entry, state.stage.suffix)
        elif (entry.on_step, entry.on_epoch, entry.reduce_fx, entry.sync_dist) != (
                on_step, on_epoch, reduce_fx, bool(sync_dist)):
            raise refusal(ValueError(
                f"self.log({name!r}, ...) was called with different on_step/on_epoch/reduce_fx/"
                "sync_dist in the same step function. Use the same options for a name, or another "
                "name."
            ))
        if on_step:
            entry.last.assign(self._unless_empty(batch_size, value, entry.last))
        if on_epoch:
            if reduce_fx == "mean":
                entry.total.assign_add(self._unless_empty(batch_size, value * batch_size, 0.0))
                entry.weight.assign_add(batch_size)
            else:
                combine = {"sum": tf.add, "max": tf.maximum, "min": tf.minimum}[reduce_fx]
                entry.total.assign(self._unless_empty(batch_size, combine(entry.total, value),
                                                      entry.total))
                entry.weight.assign_add(self._unless_empty(batch_size, 1.0, 0.0))

    # do_not_convert: plain Python over static shapes that calls no user code; AutoGraph rewriting it
    # only made the first trace of every process slower (docs/performance.md, "First epoch").
    @tf.autograph.experimental.do_not_convert
    def _unless_empty(self, batch_size, value, otherwise):
        """``value``, except on a replica whose share of the global batch is empty (a last batch
        with fewer rows than replicas): its mean is NaN, which must not reach the accumulators."""
        if self.strategy.num_replicas_in_sync == 1:
            return value
        value = tf.convert_to_tensor(value, tf.float32)
        return tf.where(batch_size > 0, value, tf.cast(otherwise, tf.float32))

    def _remember_keys(self, name: str, entry: LogEntry, suffix: str) -> None:
        for key in (key + suffix for key in entry.keys(name)):
            self.user_keys.add(key)
            if entry.prog_bar:
                self.prog_bar_keys.add(key)
            if not entry.logger:
                self.hidden_keys.add(key)

    def _log_from_hook(self, name, value, *, prog_bar, logger) -> None:
        # Outside a compiled step (a hook or a callback): the caller already is at a sync point.
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64)
        if array.size != 1:
            raise ValueError(
                f"self.log({name!r}, value) needs a scalar value. Received shape {array.shape}."
            )
        if name not in self.hook_values:
            check_names(self.stages.values(), self.hook_values, keys=[name])
        self.hook_values[name] = float(array.reshape(()))
        self._fresh_hooks.add(name)
        self.user_keys.add(name)
        if prog_bar:
            self.prog_bar_keys.add(name)
        if not logger:
            self.hidden_keys.add(name)

    def update_metrics(self, y_true, y_pred, sample_weight=None) -> None:
        """Updates the current stage's ``configure_metrics()`` objects (no-op outside a step)."""
        if self._recording is None:
            return
        state = self._recording[0]
        for route, metric in zip(state.routes, state.metrics):
            metric.update_state(pick(y_true, route, "targets"), pick(y_pred, route, "predictions"),
                                sample_weight=pick(sample_weight, route, "sample weights"))

    @tf.autograph.experimental.do_not_convert
    def track_loss(self, loss, batch_size) -> None:
        """Adds the step loss to the running, batch-size-weighted mean reported as ``loss``."""
        state = self._recording[0]
        state.has_loss = True
        loss = self._unless_empty(batch_size, tf.cast(loss, tf.float32), 0.0)
        state.loss.update_state(loss, sample_weight=batch_size)

    @tf.autograph.experimental.do_not_convert
    def record_outputs(self, outputs) -> None:
        """Keeps the step's scalar outputs in variables, for ``on_*_batch_end(outputs=...)``."""
        if outputs is None:
            return
        if not isinstance(outputs, dict):
            outputs = {"loss": outputs}
        state = self._recording[0]
        for key, value in outputs.items():
            if not tf.is_tensor(value) or value.shape.rank != 0 or not value.dtype.is_floating:
                continue
            if key not in state.outputs:
                state.outputs[key] = self._variable(0.0, f"{state.stage.name}/out/{key}")
            state.outputs[key].assign(tf.cast(value, tf.float32))
            state.recorded.add(key)

    @tf.autograph.experimental.do_not_convert
    def output_values(self, stage: Stage) -> dict:
        """Reads the output variables inside the compiled call (still tensors, no host transfer)."""
        state = self.stages[stage.name]
        return {key: var.read_value() for key, var in state.outputs.items() if key in state.recorded}

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
            for state in [s for s in self.stages.values() if s.stage.entry == VAL.entry]:
                self.clear(state.stage)  # every validation dataset's
            for key in [k for k in self.hook_values if k.startswith(VAL.prefix)]:
                del self.hook_values[key]

    def clear(self, *stages: Stage) -> None:
        """Forgets ``stages``' results (after the sanity check, which must not report values)."""
        for stage in stages:
            self.reset(stage)
            self._dirty.discard(stage.name)

    def mark_dirty(self, stage: Stage) -> None:
        """Notes that a compiled call changed ``stage``'s accumulators (read them at the next ask)."""
        self._dirty.add(stage.name)

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
                if k in self.prog_bar_keys or k not in self.user_keys}
