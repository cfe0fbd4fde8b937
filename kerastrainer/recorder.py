"""The recorder of a compiled step: what ``module.log``, ``update_metrics``, the loss and the
step's outputs write into device variables while the step is traced.

The compile site (`kerastrainer.steps.CompiledSteps`) opens a recording around every step it
traces; ``module.log`` inside the step writes to that recording's recorder. `Results` reads what
was recorded, on the host, when a callback, logger or the bar asks.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import tensorflow as tf

from kerastrainer.accumulators import INITIAL, REDUCTIONS, LogEntry, StageState, pick
from kerastrainer.log_names import check_names, is_text
from kerastrainer.refusals import refusal
from kerastrainer.stages import TRAIN, Stage

# The recording in progress, per thread: MirroredStrategy traces each replica's step in a thread
# of its own, and ``module.log`` has no other handle on the step that calls it.
_ACTIVE = threading.local()


def active() -> Recording | None:
    """The recording of the step being traced on this thread, or ``None`` (a hook, a callback)."""
    return getattr(_ACTIVE, "recording", None)


def check_log_call(name: Any, value: Any, reduce_fx: Any) -> None:
    """The checks of a ``self.log`` call that hold in a step and in a hook alike.

    Raises:
        TypeError: an empty or non-string name, a text value, or None.
        ValueError: an unknown ``reduce_fx``.
    """
    if not isinstance(name, str) or not name:
        raise refusal(TypeError(
            f"self.log() needs a non-empty string name. Received: name={name!r}"))
    if value is None:
        raise refusal(TypeError(
            f"self.log({name!r}, value) got None. Log a number or a scalar tensor (a function that "
            "returned None?). Received: value=None"))
    if is_text(value):
        raise refusal(TypeError(
            f"self.log({name!r}, value) needs a number or a numeric tensor, not text. "
            f"Received: value={value!r}. Log a number (print text from a hook)."))
    if reduce_fx not in REDUCTIONS:
        raise refusal(ValueError(
            f"self.log({name!r}, ...) got an unknown reduce_fx. Use one of {REDUCTIONS}. "
            f"Received: reduce_fx={reduce_fx!r}"))


class StepRecorder:
    """Writes a run's stages' accumulators from inside the compiled steps.

    Args:
        stages: the stages' accumulators by stage name (`Results` creates them, and reads them).
        keys: the `LogKeys` the loggers and the bar filter by; each new logged name adds its keys.
        hook_values: the values logged from hooks (a step's new name may not take one of theirs).
        pending: restored values of variables not created yet, by key: a variable made at the
            first trace starts from its saved value.
        dirty: the names of the stages whose accumulators changed since the host last read them.
        strategy: the run's ``tf.distribute.Strategy`` (variables are made in its scope).
    """

    def __init__(self, *, stages: dict[str, StageState], keys: Any, hook_values: dict,
                 pending: dict, dirty: set, strategy) -> None:
        self.stages = stages
        self.keys = keys
        self.hook_values = hook_values
        self.pending = pending
        self.dirty = dirty
        self.strategy = strategy

    @contextlib.contextmanager
    def recording(self, stage: Stage, batch_size):
        """Routes the ``module.log`` / ``update_metrics`` calls of a step traced now to ``stage``;
        yields the step's `Recording`."""
        previous = active()
        state = self.stages[stage.name]
        _ACTIVE.recording = Recording(recorder=self, state=state, batch_size=batch_size)
        try:
            yield _ACTIVE.recording
        finally:
            _ACTIVE.recording = previous
        check_names(self.stages.values(), self.hook_values, state)  # all of the step's names known now

    def changed(self, stage: Stage) -> None:
        """A compiled call ran ``stage``'s steps: the host reads its values again when next asked."""
        self.dirty.add(stage.name)

    def variable(self, initial: float, key: str, aggregation: str = "mean") -> tf.Variable:
        """A float32 accumulator, made once, eagerly, even when the first trace is inside a while
        loop or an XLA step (``init_scope``); it starts from a restored value when one waits."""
        def create(*_):
            # Under a strategy every replica updates its own copy (no collective per step); a read
            # from the host combines them.
            value = self.pending.pop(key, initial)
            with tf.init_scope(), self.strategy.scope():
                return tf.Variable(
                    value, dtype=tf.float32, trainable=False, name=key.replace("/", "_"),
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=(tf.VariableAggregation.SUM if aggregation == "sum"
                                 else tf.VariableAggregation.MEAN))

        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            # first logged inside strategy.run: the replicas meet and one of them creates it
            return tf.distribute.get_replica_context().merge_call(create)
        return create()

    # do_not_convert: plain Python over static shapes that calls no user code; AutoGraph rewriting it
    # only made the first trace of every process slower (docs/performance.md, "First epoch").
    @tf.autograph.experimental.do_not_convert
    def unless_empty(self, batch_size, value, otherwise):
        """``value``, except on a replica whose share of the global batch is empty (a last batch
        with fewer rows than replicas): its mean is NaN, which must not reach the accumulators."""
        if self.strategy.num_replicas_in_sync == 1:
            return value
        value = tf.convert_to_tensor(value, tf.float32)
        return tf.where(batch_size > 0, value, tf.cast(otherwise, tf.float32))

    def take_counts(self, stage: Stage) -> dict:
        """The label checks' counts of ``stage`` since its accumulators were last reset, as
        ``{kind: (count, classes)}`` (`kerastrainer.label_checks`). Read from this process's
        replicas only: no collective, so a worker may read them at its own time."""
        counts = {}
        for kind, (counter, classes) in self.stages[stage.name].counts.items():
            if classes is None:  # its step never counted: nothing to read
                continue
            parts = self.strategy.experimental_local_results(counter)
            counts[kind] = (sum(float(part.numpy()) for part in parts), classes)
        return counts

    @tf.autograph.experimental.do_not_convert
    def output_values(self, stage: Stage) -> dict:
        """Reads the output variables inside the compiled call (still tensors, no host transfer)."""
        state = self.stages[stage.name]
        return {key: var.read_value() for key, var in state.outputs.items() if key in state.recorded}


class Recording:
    """One traced step's writes: its stage's accumulators and its batch size (a tensor)."""

    def __init__(self, *, recorder: StepRecorder, state: StageState, batch_size) -> None:
        self.recorder = recorder
        self.state = state
        self.batch_size = batch_size

    def log(self, name: str, value: Any, *, on_step, on_epoch, prog_bar, logger, reduce_fx,
            sync_dist=False) -> None:
        """``TrainModule.log`` inside a step (checked by `check_log_call` first)."""
        state = self.state
        batch_size = self.batch_size
        unless_empty = self.recorder.unless_empty
        on_step = (state.stage is TRAIN) if on_step is None else bool(on_step)
        on_epoch = (state.stage is not TRAIN) if on_epoch is None else bool(on_epoch)
        value = tf.cast(tf.convert_to_tensor(value), tf.float32)
        if value.shape.rank not in (None, 0) and value.shape.num_elements() != 1:
            raise refusal(ValueError(
                f"self.log({name!r}, value) needs a scalar value. Received a tensor of shape "
                f"{tuple(value.shape)}: reduce it first, e.g. keras.ops.mean(value)."))
        value = tf.reshape(value, [])
        entry = state.entries.get(name)
        if entry is None:
            entry = self._new_entry(name, on_step, on_epoch, prog_bar, logger, reduce_fx, sync_dist)
        elif (entry.on_step, entry.on_epoch, entry.reduce_fx, entry.sync_dist) != (
                on_step, on_epoch, reduce_fx, bool(sync_dist)):
            raise refusal(ValueError(
                f"self.log({name!r}, ...) was called with different on_step/on_epoch/reduce_fx/"
                "sync_dist in the same step function. Use the same options for a name, or another "
                "name."))
        if on_step:
            entry.last.assign(unless_empty(batch_size, value, entry.last))
        if not on_epoch:
            return
        if reduce_fx == "mean":
            entry.total.assign_add(unless_empty(batch_size, value * batch_size, 0.0))
            entry.weight.assign_add(batch_size)
        else:
            combine = {"sum": tf.add, "max": tf.maximum, "min": tf.minimum}[reduce_fx]
            entry.total.assign(unless_empty(batch_size, combine(entry.total, value), entry.total))
            entry.weight.assign_add(unless_empty(batch_size, 1.0, 0.0))

    def _new_entry(self, name, on_step, on_epoch, prog_bar, logger, reduce_fx, sync_dist) -> LogEntry:
        state = self.state
        stage = state.stage.name
        variable = self.recorder.variable
        entry = LogEntry(
            on_step, on_epoch, bool(prog_bar), bool(logger), reduce_fx, bool(sync_dist),
            last=variable(0.0, f"{stage}/log/{name}/last", "sum" if reduce_fx == "sum" else "mean"),
            total=variable(INITIAL[reduce_fx], f"{stage}/log/{name}/total",
                           "sum" if reduce_fx in ("mean", "sum") else "mean"),
            weight=variable(0.0, f"{stage}/log/{name}/weight", "sum"),
        )
        state.entries[name] = entry
        self.recorder.keys.remember(entry.keys(name), suffix=state.stage.suffix, prog_bar=entry.prog_bar,
                                    logger=entry.logger)
        return entry

    def update_metrics(self, y_true, y_pred, sample_weight=None) -> None:
        """Updates the stage's metrics: ``configure_metrics()``'s without the sample weights,
        ``configure_weighted_metrics()``'s with them (Keras's ``metrics`` and ``weighted_metrics``)."""
        state = self.state
        for route, metric, weighted in zip(state.routes, state.metrics, state.weighted):
            weights = pick(sample_weight, route, "sample weights") if weighted else None
            metric.update_state(pick(y_true, route, "targets"), pick(y_pred, route, "predictions"),
                                sample_weight=weights)

    @tf.autograph.experimental.do_not_convert
    def count(self, kind: str, value, *, classes: int) -> None:
        """Adds ``value`` to the stage's counter ``kind`` (a label check of `label_checks`; `Results`
        made the counter before any trace, as a variable made in a trace would retrace the step)."""
        counter = self.state.counts[kind]
        counter[1] = classes
        counter[0].assign_add(value)

    @tf.autograph.experimental.do_not_convert
    def track_loss(self, loss) -> None:
        """Adds the step loss to the running, batch-size-weighted mean reported as ``loss``."""
        state = self.state
        state.has_loss = True
        loss = self.recorder.unless_empty(self.batch_size, tf.cast(loss, tf.float32), 0.0)
        state.loss.update_state(loss, sample_weight=self.batch_size)

    @tf.autograph.experimental.do_not_convert
    def record_outputs(self, outputs) -> None:
        """Keeps the step's scalar outputs in variables, for ``on_*_batch_end(outputs=...)``."""
        if outputs is None:
            return
        if not isinstance(outputs, dict):
            outputs = {"loss": outputs}
        state = self.state
        for key, value in outputs.items():
            if not tf.is_tensor(value) or value.shape.rank != 0 or not value.dtype.is_floating:
                continue
            if key not in state.outputs:
                state.outputs[key] = self.recorder.variable(0.0, f"{state.stage.name}/out/{key}")
            state.outputs[key].assign(tf.cast(value, tf.float32))
            state.recorded.add(key)

