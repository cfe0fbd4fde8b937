"""The one compile site: training, evaluation and prediction steps as ``tf.function``s.

Each kind of step is an inner function (the user's ``*_step`` plus gradient application, optionally
XLA-compiled) inside an outer function that runs up to ``n`` steps from a ``tf.data`` iterator in a
``tf.while_loop``. Both are built once per run and reused across epochs; tensors of the same signature
never retrace, and the last partial batch does not either (batch dimensions are ``None``).
"""

from __future__ import annotations

import inspect
from collections import Counter

import keras
import tensorflow as tf


def _takes_batch_idx(method) -> bool:
    params = [
        p for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def trainable_candidates(module) -> list:
    """Every variable that is trainable now or becomes so when its layer is unfrozen."""
    found, seen = [], set()
    for layer in module._flatten_layers(include_self=True):
        for variable in layer._trainable_variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found or list(module.trainable_variables)


def trainable_signature(module) -> tuple:
    return tuple(id(v) for v in module.trainable_variables)


def batch_size_of(batch):
    first = tf.nest.flatten(batch)[0]
    return tf.cast(tf.shape(first)[0], tf.float32)


def _loss_of(outputs, where: str, required: bool):
    if isinstance(outputs, dict):
        if "loss" in outputs:
            return outputs["loss"]
        if required:
            raise ValueError(
                f"{where} returned a dict without a 'loss' key. Received keys: {sorted(outputs)}. "
                "Return the loss tensor, or a dict holding it under 'loss'."
            )
        return None
    if outputs is None:
        if required:
            raise ValueError(
                f"{where} returned None. With automatic optimization it must return the loss tensor "
                "(or a dict holding 'loss'); set `automatic_optimization = False` to apply gradients "
                "yourself."
            )
        return None
    return outputs


class CompiledSteps:
    """Builds and holds the compiled step functions of one module.

    Args:
        module: the ``TrainModule``.
        logs: the trainer's ``LogCollector``.
        bus: the ``CallbackBus`` (for ``on_before_optimizer_step``, traced into the step).
        jit_compile: compile the inner step with XLA.
        run_eagerly: skip ``tf.function`` entirely (debugging).

    Attributes:
        trace_counts: how many times each step's Python code ran (traces; steps when eager).
    """

    def __init__(self, *, module, logs, bus, jit_compile: bool, run_eagerly: bool,
                 accumulate: int = 1, detect_anomaly: bool = False) -> None:
        self.module = module
        self.logs = logs
        self.bus = bus
        self.jit_compile = jit_compile
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

    def state_variables(self) -> dict:
        """Device state that a checkpoint must hold for exact resume (gradient sums)."""
        if not self.accumulating:
            return {}
        found = {f"sum/{i}": acc for i, acc in enumerate(self._acc)}
        found.update(count=self._acc_count, every=self.accumulate)
        return found

    # ------------------------------------------------------------------ one step
    def _call_user(self, method, batch, batch_idx):
        if _takes_batch_idx(method):
            return method(batch, batch_idx)
        return method(batch)

    def _train_step(self, batch):
        self.trace_counts["train"] += 1
        module = self.module
        state = self.logs.stages["train"]
        where = f"{type(module).__name__}.training_step"
        size = batch_size_of(batch)
        with self.logs.recording("train", size):
            if module.automatic_optimization:
                with tf.GradientTape() as tape:
                    # A layer frozen before it was built got TF variables created non-trainable,
                    # which a tape does not watch even after unfreezing: watch them explicitly.
                    hidden = [v.value for v in module.trainable_variables
                              if isinstance(v.value, tf.Variable) and not v.value.trainable]
                    if hidden:
                        tape.watch(hidden)
                    outputs = self._call_user(module.training_step, batch, state.batch_idx.value())
                    loss = _loss_of(outputs, where, required=True)
                    scaled = (module.optimizer.scale_loss(loss) if isinstance(
                        module.optimizer, keras.optimizers.LossScaleOptimizer) else loss)
                variables = module.trainable_variables
                gradients = tape.gradient(scaled, variables)  # unscaled inside apply()
                if self.detect_anomaly:
                    self._assert_finite(loss, gradients, variables)
                self.bus.call("on_before_optimizer_step", module.optimizer)
                if self.accumulating:
                    self._accumulate(gradients, variables)
                else:
                    module.optimizer.apply_gradients(
                        [(g, v) for g, v in zip(gradients, variables) if g is not None])
            else:
                outputs = self._call_user(module.training_step, batch, state.batch_idx.value())
                loss = _loss_of(outputs, where, required=False)
            if loss is not None:
                self.logs.track_loss(loss, size)
            self.logs.record_outputs(outputs)
        state.batch_idx.assign_add(1)

    def _assert_finite(self, loss, gradients, variables):
        # In-graph checks: the step fails with the values named, and nothing reaches the host
        # unless a value is bad.
        step = self.module.optimizer.iterations + 1
        tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(loss)),
                            ["detect_anomaly: the loss is not finite at global step", step,
                             "loss:", loss])
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

    def _eval_step(self, stage: str, batch):
        self.trace_counts[stage] += 1
        module = self.module
        method = module.validation_step if stage == "val" else module.test_step
        state = self.logs.stages[stage]
        size = batch_size_of(batch)
        with self.logs.recording(stage, size):
            outputs = self._call_user(method, batch, state.batch_idx.value())
            loss = _loss_of(outputs, f"{type(module).__name__}.{method.__name__}", required=False)
            if loss is not None:
                self.logs.track_loss(loss, size)
            self.logs.record_outputs(outputs)
        state.batch_idx.assign_add(1)

    # ------------------------------------------------------------------ many steps per call
    def _compile(self, fn, *, jit: bool):
        if self.run_eagerly:
            return fn
        return tf.function(fn, jit_compile=jit, reduce_retracing=True)

    def _make_loop(self, stage: str, step):
        logs = self.logs

        def run_steps(iterator, n):
            def keep_going(i, more):
                return tf.logical_and(i < n, more)

            def one_more(i, more):
                optional = iterator.get_next_as_optional()

                def run():
                    step(optional.get_value())
                    return tf.constant(True)

                got = tf.cond(optional.has_value(), run, lambda: tf.constant(False))
                return i + tf.cast(got, tf.int64), got

            ran, _ = tf.while_loop(
                keep_going, one_more, (tf.constant(0, tf.int64), tf.constant(True)),
                parallel_iterations=1,
            )
            return ran, logs.output_values(stage)

        return self._compile(run_steps, jit=False)

    def _loop(self, stage: str):
        if stage not in self._loops:
            if stage == "train":
                step = self._compile(self._train_step, jit=self.jit_compile)
            else:
                step = self._compile(lambda batch: self._eval_step(stage, batch), jit=self.jit_compile)
            self._loops[stage] = self._make_loop(stage, step)
        return self._loops[stage]

    def check_trainable(self) -> bool:
        """Drops the compiled training step when trainability changed; True if it did.

        Called once per epoch start: the next call traces the step again, exactly once.
        """
        signature = trainable_signature(self.module)
        if signature == self.signature:
            return False
        self.signature = signature
        self._loops.pop("train", None)
        self._loops.pop("flush", None)
        return True

    def run(self, stage: str, iterator, n: int):
        """Runs up to ``n`` steps of ``stage``; returns (steps run as a tensor, outputs of the last)."""
        if n not in self._n_cache:  # one constant per chunk size, not one per call
            self._n_cache[n] = tf.constant(n, tf.int64)
        return self._loop(stage)(iterator, self._n_cache[n])

    def predict_function(self):
        """Returns ``f(iterator, batch_idx)`` running ``predict_step`` on the iterator's next batch.

        ``batch_idx`` must be a tensor (a Python int would retrace for every value).
        """
        if "predict" not in self._loops:
            module = self.module

            def predict_one(batch, batch_idx):
                self.trace_counts["predict"] += 1
                return self._call_user(module.predict_step, batch, batch_idx)

            step = self._compile(predict_one, jit=self.jit_compile)

            def predict_next(iterator, batch_idx):
                return step(next(iterator), batch_idx)

            self._loops["predict"] = self._compile(predict_next, jit=False)
        return self._loops["predict"]


def check_optimizer(module, optimizer):
    """Validates what ``configure_optimizer()`` returned; returns ``(optimizer, lr_scheduler or None)``.

    Accepted: an optimizer; ``{"optimizer": opt, "lr_scheduler": ...}`` (Lightning's shape); or,
    with manual optimization, a dict of named optimizers.

    Raises:
        TypeError: not a Keras optimizer (or, with manual optimization, not a dict of them).
    """
    from kerastrainer.lr import normalize_scheduler

    name = type(module).__name__
    if isinstance(optimizer, dict) and isinstance(optimizer.get("optimizer"),
                                                  keras.optimizers.Optimizer):
        extra = set(optimizer) - {"optimizer", "lr_scheduler"}
        if extra:
            raise ValueError(f"{name}.configure_optimizer() returned unknown keys {sorted(extra)}; "
                             "use 'optimizer' and 'lr_scheduler'.")
        scheduler = optimizer.get("lr_scheduler")
        return optimizer["optimizer"], (
            normalize_scheduler(scheduler, f"{name}.configure_optimizer()") if scheduler else None)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer, None
    if isinstance(optimizer, dict) and optimizer and all(
        isinstance(o, keras.optimizers.Optimizer) for o in optimizer.values()
    ):
        if module.automatic_optimization:
            raise TypeError(
                f"{name}.configure_optimizer() returned a dict of optimizers {sorted(optimizer)}, which "
                "needs manual optimization: set `automatic_optimization = False` on the class and apply "
                "them in training_step."
            )
        return optimizer, None
    raise TypeError(
        f"{name}.configure_optimizer() must return a keras.optimizers.Optimizer, e.g. "
        f"keras.optimizers.Adam(1e-3). Received: {optimizer!r} (type {type(optimizer).__name__})"
    )
