"""The one compile site: training, evaluation and prediction steps as ``tf.function``s.

Each kind of step (the user's ``*_step`` plus gradient application) runs ``n`` times per call inside
a ``tf.while_loop``, fed either from a ``tf.data`` iterator (the step is an inner ``tf.function``,
XLA-compiled when asked) or from arrays held in memory (the loop slices this epoch's row order and
gathers the rows itself; with XLA the whole loop is one compiled program). Functions are built once per
run and reused across epochs; the last partial batch does not retrace (batch dimensions are ``None``),
except under XLA, which compiles once per batch shape.
"""

from __future__ import annotations

import logging
from collections import Counter

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.building import batch_size_of, call_step, trainable_candidates
from kerastrainer.losses import check_gradients, scalar_loss
from kerastrainer.op_errors import raise_surfaced
from kerastrainer.refusals import refusal
from kerastrainer.stages import TRAIN, Stage

# What tf2xla raises for an op it cannot compile.
_XLA_ERRORS = (ValueError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError)


class _OwnRetracingFilter(logging.Filter):
    """Drops TensorFlow's "frequent retracing" warning about this module's functions: one function
    per stage, feed and XLA choice is built on purpose, each traced once (see ``trace_counts``)."""

    def filter(self, record) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "CompiledSteps." in message)


tf.get_logger().addFilter(_OwnRetracingFilter())


def trainable_signature(module) -> tuple:
    return tuple(id(v) for v in module.trainable_variables)


# do_not_convert: plain Python over static shapes that calls no user code; AutoGraph rewriting it
# only made the first trace of every process slower (docs/performance.md, "First epoch").
@tf.autograph.experimental.do_not_convert
def _loss_of(outputs, where: str, required: bool):
    """The loss a step returned (a tensor, or a dict's ``"loss"``), as a scalar."""
    if isinstance(outputs, dict):
        if "loss" in outputs:
            return scalar_loss(outputs["loss"], where)
        if required:
            raise refusal(ValueError(
                f"{where} returned a dict without a 'loss' key. Received keys: {sorted(outputs)}. "
                "Return the loss tensor, or a dict holding it under 'loss'."
            ))
        return None
    if isinstance(outputs, (tuple, list)):
        raise refusal(TypeError(
            f"{where} returned a {type(outputs).__name__} of {len(outputs)} items. Return the loss "
            "tensor, or a dict with the loss under 'loss' and anything else beside it: "
            "{'loss': loss, 'y_pred': y_pred}."))
    if outputs is None:
        if required:
            raise refusal(ValueError(
                f"{where} returned None. With automatic optimization it must return the loss tensor "
                "(or a dict holding 'loss'); set `automatic_optimization = False` to apply gradients "
                "yourself."
            ))
        return None
    return scalar_loss(outputs, where)


@tf.autograph.experimental.do_not_convert
def _unscaled(gradients, optimizer):
    """The gradients the optimizer applies: a LossScaleOptimizer's scale divided out."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return gradients
    return [None if g is None else g / tf.cast(optimizer.dynamic_scale, g.dtype) for g in gradients]


@tf.autograph.experimental.do_not_convert
def _with_loss(outputs, loss):
    """The step's outputs with its loss as the scalar that was differentiated and logged."""
    if loss is None:
        return outputs
    return {**outputs, "loss": loss} if isinstance(outputs, dict) else loss


class CompiledSteps:
    """Builds, holds and runs the compiled step functions of one module.

    Whether a call uses XLA is the caller's choice (see `kerastrainer.autotune`); this class
    only compiles what it is asked for, once.

    Args:
        module: the ``TrainModule``.
        recorder: the `StepRecorder` its steps write logged values, the loss, metrics and
            outputs with (``trainer.results.recorder``: the accumulators `Results` reads).
        bus: the ``CallbackBus`` (for ``on_before_optimizer_step``, traced into the step).
        run_eagerly: skip ``tf.function`` entirely (debugging).
        accumulate: ``accumulate_grad_batches`` when the steps are built (more than 1: the
            gradients are summed on the device).
        detect_anomaly: check in the step that the loss and gradients are finite.
        strategy: the run's ``tf.distribute.Strategy``.

    Attributes:
        trace_counts: how many times each step's Python code ran (traces; steps when eager).
        functions_built: how many compiled functions were made so far (a call that makes one
            traces, so its time says nothing about the step's speed).
    """

    def __init__(self, *, module, recorder, bus, run_eagerly: bool, accumulate: int = 1,
                 detect_anomaly: bool = False, strategy=None) -> None:
        self.module = module
        self.strategy = strategy or tf.distribute.get_strategy()
        self.world_size = self.strategy.num_replicas_in_sync  # replicas in sync
        if self.world_size > 1 and accumulate > 1:
            raise ValueError(
                "accumulate_grad_batches > 1 is not supported with a distribution strategy of "
                f"{self.world_size} replicas yet: raise the global batch size instead. Received: "
                f"accumulate_grad_batches={accumulate}")
        self.recorder = recorder
        self.bus = bus
        self.run_eagerly = run_eagerly
        self.detect_anomaly = detect_anomaly
        self.trace_counts: Counter = Counter()
        self._loops: dict = {}
        self._n_cache: dict = {}
        self.signature = trainable_signature(module)
        self.accumulating = accumulate > 1 and module.automatic_optimization
        if self.accumulating:
            # Gradient sums live on the device; the number of batches to sum is a variable too, so a
            # GradientAccumulationScheduler changes it without retracing.
            self._acc_vars = trainable_candidates(module)
            self._acc_index = {id(v): i for i, v in enumerate(self._acc_vars)}
            self._acc = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self._acc_vars]
            self._acc_count = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.accumulate = tf.Variable(accumulate, dtype=tf.int64, trainable=False)

    @property
    def functions_built(self) -> int:
        return len(self._loops)

    @property
    def functions(self) -> list:
        """The keys of the compiled functions made so far, e.g. ``("train", "memory", False, 32)``."""
        return sorted(self._loops, key=str)

    def set_accumulation(self, batches: int) -> int:
        """Sets how many batches' gradients make one optimizer step (no retrace); returns the
        batches per optimizer step now in force (1 when the steps do not accumulate)."""
        if not self.accumulating:
            return 1
        self.accumulate.assign(batches)
        return batches

    def state_dict(self) -> dict:
        """Device state that a checkpoint must hold for exact resume (gradient sums)."""
        if not self.accumulating:
            return {}
        return {"sum": {str(i): np.asarray(acc.numpy()) for i, acc in enumerate(self._acc)},
                "count": np.asarray(self._acc_count.numpy()),
                "every": np.asarray(self.accumulate.numpy())}

    def load_state_dict(self, state: dict) -> None:
        if not self.accumulating or not state:
            return
        for i, acc in enumerate(self._acc):
            acc.assign(state["sum"][str(i)])
        self._acc_count.assign(state["count"])
        self.accumulate.assign(state["every"])

    # ------------------------------------------------------------------ one step
    def _train_step(self, batch):
        self.trace_counts[TRAIN.name] += 1
        module = self.module
        where = f"{type(module).__name__}.training_step"
        size = batch_size_of(batch)
        with self.recorder.recording(TRAIN, size) as recording:
            batch_idx = recording.state.batch_idx
            if module.automatic_optimization:
                with tf.GradientTape() as tape:
                    # A layer frozen before it was built got TF variables created non-trainable,
                    # which a tape does not watch even after unfreezing: watch them explicitly.
                    hidden = [v.value for v in module.trainable_variables
                              if isinstance(v.value, tf.Variable) and not v.value.trainable]
                    if hidden:
                        tape.watch(hidden)
                    outputs = call_step(module.training_step, batch, batch_idx.value())
                    loss = _loss_of(outputs, where, required=True)
                    scaled = (module.optimizer.scale_loss(loss) if isinstance(
                        module.optimizer, keras.optimizers.LossScaleOptimizer) else loss)
                    if self.world_size > 1:
                        # Gradients are summed over replicas: weigh this replica's mean loss by its
                        # share of the global batch, so the sum is the global batch's mean.
                        context = tf.distribute.get_replica_context()
                        total = context.all_reduce(tf.distribute.ReduceOp.SUM, size)
                        scaled = scaled * tf.cast(size / total, scaled.dtype)
                variables = module.trainable_variables
                gradients = tape.gradient(scaled, variables)  # unscaled inside apply()
                updates = check_gradients(gradients, variables, module, where)
                if self.detect_anomaly and updates:
                    self._assert_finite(loss, gradients, variables)
                if self.bus.has("on_after_backward"):
                    self.bus.call("on_after_backward", _unscaled(gradients, module.optimizer), variables)
                self.bus.call("on_before_optimizer_step", module.optimizer)
                if self.accumulating and updates:
                    self._accumulate(gradients, variables)
                elif updates:
                    module.optimizer.apply_gradients(
                        [(g, v) for g, v in zip(gradients, variables) if g is not None])
            else:
                outputs = call_step(module.training_step, batch, batch_idx.value())
                loss = _loss_of(outputs, where, required=False)
            if loss is not None:
                recording.track_loss(loss)
            recording.record_outputs(_with_loss(outputs, loss))
        batch_idx.assign_add(1)

    def _assert_finite(self, loss, gradients, variables):
        # In-graph checks: the step fails with the values named, and nothing reaches the host
        # unless a value is bad.
        step = self.module.optimizer.iterations + 1
        tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(loss)),
                            ["detect_anomaly: the loss is not finite at global step", step,
                             "- loss:", loss])
        for gradient, variable in zip(gradients, variables):
            if gradient is not None:
                tf.debugging.Assert(
                    tf.reduce_all(tf.math.is_finite(gradient)),
                    [f"detect_anomaly: the gradient of {variable.path} is not finite at global "
                     "step", step])

    def _accumulate(self, gradients, variables):
        for gradient, variable in zip(gradients, variables):
            if gradient is not None:
                self._acc[self._acc_index[id(variable)]].assign_add(gradient)
        self._acc_count.assign_add(1)
        tf.cond(self._acc_count >= self.accumulate, self._apply_accumulated,
                lambda: tf.constant(False))

    def _apply_accumulated(self):
        """Applies the mean of the summed gradients once, then starts a new sum."""
        count = tf.cast(self._acc_count, self._acc[0].dtype) if self._acc else 1.0
        self.module.optimizer.apply_gradients(  # frozen variables (trace-time state) are left alone
            [(acc / tf.cast(count, acc.dtype), v) for acc, v in zip(self._acc, self._acc_vars)
             if v.trainable])
        for acc in self._acc:
            acc.assign(tf.zeros_like(acc))
        self._acc_count.assign(0)
        return tf.constant(True)

    def flush(self):
        """Applies a partial accumulation (the epoch ended before ``accumulate`` batches)."""
        if "flush" not in self._loops:
            self._loops["flush"] = self._compile(
                lambda: tf.cond(self._acc_count > 0, self._apply_accumulated,
                                lambda: tf.constant(False)), jit=False)
        return self._loops["flush"]()

    def _eval_step(self, stage: Stage, batch):
        self.trace_counts[stage.name] += 1
        module = self.module
        size = batch_size_of(batch)
        with self.recorder.recording(stage, size) as recording:
            batch_idx = recording.state.batch_idx
            outputs = call_step(stage.step_fn(module), batch, batch_idx.value(),
                                stage.dataloader_idx)
            loss = _loss_of(outputs, f"{type(module).__name__}.{stage.step}", required=False)
            if loss is not None:
                recording.track_loss(loss)
            recording.record_outputs(_with_loss(outputs, loss))
        batch_idx.assign_add(1)

    # ------------------------------------------------------------------ many steps per call
    def _compile(self, fn, *, jit: bool):
        if self.run_eagerly:
            return fn
        return tf.function(fn, jit_compile=jit, reduce_retracing=True)

    @staticmethod
    def compile_reader(fn):
        """Compiles a `Results` reader (``host_reads.FlatReader``): plain ``tf.function``, no XLA."""
        return tf.function(fn)

    def _step_fn(self, stage: Stage):
        if stage is TRAIN:
            return self._train_step
        return lambda batch: self._eval_step(stage, batch)

    def _iterator_loop(self, stage: Stage, jit: bool):
        """``f(iterator, n)``: up to ``n`` steps from the iterator; returns (steps run, outputs)."""
        key = (stage.name, "iterator", jit)
        if key in self._loops:
            return self._loops[key]
        # Under a multi-replica strategy the step is traced inline, in strategy.run (a nested
        # tf.function there fails to capture the replicas' values).
        step = self._step_fn(stage) if self.world_size > 1 else self._compile(self._step_fn(stage),
                                                                              jit=jit)
        recorder = self.recorder

        def run_steps(iterator, n):
            def keep_going(i, more):
                return tf.logical_and(i < n, more)

            def one_more(i, more):
                optional = iterator.get_next_as_optional()

                def run():
                    if self.world_size > 1:
                        self.strategy.run(step, args=(optional.get_value(),))
                    else:
                        step(optional.get_value())
                    return tf.constant(True)

                got = tf.cond(optional.has_value(), run, lambda: tf.constant(False))
                return i + tf.cast(got, tf.int64), got

            ran, _ = tf.while_loop(
                keep_going, one_more, (tf.constant(0, tf.int64), tf.constant(True)),
                parallel_iterations=1,
            )
            return ran, recorder.output_values(stage)

        self._loops[key] = self._compile(run_steps, jit=False)
        return self._loops[key]

    def _memory_loop(self, stage: Stage, jit: bool, batch_size: int):
        """``f(tensors, order, start, n)``: ``n`` steps on batches ``start, start+1, ...`` of ``order``.

        Under XLA every batch must hold ``batch_size`` rows (a static shape); otherwise the slice
        is dynamic, so that the last, smaller batch runs through the same trace.
        """
        key = (stage.name, "memory", jit, batch_size)
        if key in self._loops:
            return self._loops[key]
        step = self._step_fn(stage)
        recorder = self.recorder
        if self.world_size > 1:
            step = self._replica_share(step)

        def run_slices(tensors, order, start, n):
            rows = tf.shape(order, out_type=tf.int64)[0]

            def one_more(i):
                low = (start + i) * batch_size
                if jit:  # a gather, not a slice: XLA would compile again for every start value
                    indices = tf.gather(order, low + tf.range(batch_size, dtype=tf.int64))
                else:
                    count = tf.minimum(tf.constant(batch_size, tf.int64), rows - low)
                    indices = tf.slice(order, tf.reshape(low, [1]), tf.reshape(count, [1]))
                if self.world_size > 1:
                    self.strategy.run(step, args=(tensors, indices))
                else:
                    step(tf.nest.map_structure(lambda t: tf.gather(t, indices), tensors))
                return (i + 1,)

            (ran,) = tf.while_loop(lambda i: i < n, one_more, (tf.constant(0, tf.int64),),
                                   parallel_iterations=1)
            return ran, recorder.output_values(stage)

        self._loops[key] = self._compile(run_slices, jit=jit)
        return self._loops[key]

    @staticmethod
    def _replica_share(step):
        """Under a multi-replica strategy each replica gathers its own rows of the global batch.

        Every worker holds all rows and the same order; replica ``r`` of ``k`` (numbered across
        workers) takes the ``r``-th contiguous part, as a ``tf.data`` split of the batch would.
        """

        def on_replica(tensors, indices):
            context = tf.distribute.get_replica_context()
            replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
            replicas = context.num_replicas_in_sync
            count = tf.shape(indices, out_type=tf.int64)[0]
            mine = indices[count * replica // replicas:count * (replica + 1) // replicas]
            step(tf.nest.map_structure(lambda t: tf.gather(t, mine), tensors))

        return on_replica

    def _run_memory(self, stage, feed, n, batch_idx, jit):
        def call(loop, start, count):
            # NumPy values: TensorFlow caches every distinct Python int it converts, for good.
            return loop(feed.tensors, feed.order, tf.constant(np.int64(start)),
                        tf.constant(np.int64(count)))

        if not jit:
            return call(self._memory_loop(stage, False, feed.batch_size), batch_idx, n)
        full = max(0, min(n, feed.full_batches - batch_idx))
        ran = outputs = None
        if full:
            ran, outputs = call(self._memory_loop(stage, True, feed.batch_size), batch_idx, full)
        if n > full:  # the last, smaller batch: plain, rather than one more XLA compile for its shape
            more, outputs = call(self._memory_loop(stage, False, feed.batch_size), batch_idx + full,
                                 n - full)
            ran = more if ran is None else ran + more
        return ran, outputs

    def lowering_error(self, stage: Stage, feed) -> Exception | None:
        """Lowers ``stage``'s step to XLA once without running it; returns the error if it cannot
        be compiled (``None`` when it can)."""
        try:
            if feed.in_memory:
                loop = self._memory_loop(stage, True, feed.batch_size)
                loop.experimental_get_compiler_ir(
                    feed.tensors, feed.order, tf.constant(0, tf.int64),
                    tf.constant(1, tf.int64))(stage="hlo")
            else:
                step = tf.function(self._step_fn(stage), jit_compile=True)
                zeros = tf.nest.map_structure(
                    lambda spec: tf.zeros([d or 1 for d in spec.shape], spec.dtype),
                    feed.iterator.element_spec)
                step.experimental_get_compiler_ir(zeros)(stage="hlo")
        except _XLA_ERRORS as error:
            return error
        return None

    def run(self, stage: Stage, feed, n: int, batch_idx: int = 0, *, jit: bool = False):
        """Runs up to ``n`` steps of ``stage`` from ``feed`` (in memory: from batch ``batch_idx`` of
        the epoch), with XLA when ``jit``; returns (steps run as a tensor, outputs of the last step).

        The stage's accumulators changed: the results read them again when next asked.
        """
        self.recorder.changed(stage)
        try:  # no context manager: this runs for every compiled call
            if feed.in_memory:
                return self._run_memory(stage, feed, n, batch_idx, jit)
            if n not in self._n_cache:  # one constant per chunk size, not one per call
                self._n_cache[n] = tf.constant(n, tf.int64)
            return self._iterator_loop(stage, jit)(feed.iterator, self._n_cache[n])
        except Exception as error:  # noqa: BLE001 - re-raised, unwrapped where it is wrapped
            raise_surfaced(error)
            raise

    def refresh_trainable(self) -> None:
        """Drops the compiled training step when trainability changed (a layer was frozen or
        unfrozen); the next call traces it again, exactly once."""
        signature = trainable_signature(self.module)
        if signature == self.signature:
            return
        self.signature = signature
        for key in [k for k in self._loops if k == "flush" or k[0] == TRAIN.name]:
            del self._loops[key]

    def predict_function(self, *, jit: bool = False):
        """Returns ``f(iterator, batch_idx)`` running ``predict_step`` on the iterator's next batch.

        ``batch_idx`` must be a tensor (a Python int would retrace for every value).
        """
        if "predict" not in self._loops:
            module = self.module

            def predict_one(batch, batch_idx):
                self.trace_counts["predict"] += 1
                return call_step(module.predict_step, batch, batch_idx)

            step = self._compile(predict_one, jit=jit)

            def predict_next(iterator, batch_idx):
                return step(next(iterator), batch_idx)

            self._loops["predict"] = self._compile(predict_next, jit=False)
        return self._loops["predict"]
