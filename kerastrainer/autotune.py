"""``steps_per_execution="auto"`` and ``jit_compile="auto"``: choices made from measured call times.

The chunk size (training steps per compiled call) grows until one call takes about
`TARGET_CALL_SECONDS`: long enough that the Python work per call (hooks, dispatch) is noise,
short enough that the progress bar, ``max_time`` and a SIGTERM are served promptly. The
`FitLoop` then caps each chunk at the next point a hook, logger or
validation needs.

XLA is tried only where it can pay off: on a GPU it is used whenever the step compiles; on a CPU it is
timed against the plain step on the run's own first batches (XLA speeds up small dense nets several
times there but slows convolutions down), and kept when it is clearly faster. Runs too short to repay
a compile, ``deterministic=True`` runs and ``detect_anomaly`` runs skip the measurement.
"""

from __future__ import annotations

import time

import tensorflow as tf

from kerastrainer.stages import TRAIN

#: Aim for compiled calls of about this many seconds.
TARGET_CALL_SECONDS = 0.05
#: The largest automatic chunk.
MAX_CHUNK = 1000
#: The largest chunk while XLA is being timed.
PROBE_CHUNK = 16
#: Runs planned shorter than this many training batches do not time XLA against the plain step.
MIN_STEPS_TO_PROBE = 500
#: XLA is kept when a step takes at most this fraction of the plain step's time.
XLA_MARGIN = 0.9

# The measurement, one entry per training call: (use XLA, time it). The first call of each variant
# traces (and compiles), so it is not timed; the variants then alternate to share any drift in load.
_PROBE = ((False, False), (False, True), (True, False), (True, True), (False, True), (True, True))


def gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def varying_shapes(element_spec) -> bool:
    """Whether batches of this spec may differ in shape beyond their first (batch) dimension."""
    specs = tf.nest.flatten(element_spec)
    if any(isinstance(spec, (tf.RaggedTensorSpec, tf.SparseTensorSpec)) for spec in specs):
        return True
    return any(spec.shape.rank is None or None in spec.shape.as_list()[1:]
               for spec in specs if isinstance(spec, tf.TensorSpec))


class StepTuner:
    """Chooses the chunk size and XLA for the compiled calls of one fit, and times them.

    The Trainer runs every compiled call through `run`, which passes the XLA choice to
    `CompiledSteps` and, while ``"auto"`` is deciding, times the call.

    Args:
        steps_per_execution: an int, or ``"auto"``.
        jit_compile: ``True``, ``False`` or ``"auto"``.
        planned_batches: training batches the run will take at most (``None``: unknown or no limit).
        fixed_rule: decide ``"auto"`` XLA without timing (deterministic or anomaly-checking runs).
        world_size: replicas in sync; with more than one, XLA is off whatever ``jit_compile``.
        varying_shapes: the training batches' shapes change beyond the batch size (a padded batch
            per length): ``"auto"`` keeps the plain step, as XLA would compile once per shape.
        unknown_length: the training data's length is unknown (and no ``max_steps`` bounds the
            run): ``"auto"`` on a CPU does not bet a measurement on a run it cannot size.
        workers: worker processes; with more than one, automatic chunks do not depend on timing
            (every worker must cut the same chunks).
        every_batch: automatic chunks are one batch long (a callback needs every batch).

    Attributes:
        jit: the XLA choice, or ``None`` while it is being measured.
        reason: why ``jit`` is what it is (``trainer.step_tuner.reason``).
        chunk: the current automatic chunk size.
    """

    def __init__(self, *, steps_per_execution, jit_compile, planned_batches=None,
                 fixed_rule: bool = False, world_size: int = 1, workers: int = 1,
                 every_batch: bool = False, varying_shapes: bool = False,
                 unknown_length: bool = False) -> None:
        self.auto_chunk = steps_per_execution == "auto"
        self.chunk = 1 if self.auto_chunk else steps_per_execution
        self.workers = workers
        self.every_batch = every_batch
        self.seconds_per_step: float | None = None
        self._calls = 0
        self._samples: dict = {False: [0.0, 0], True: [0.0, 0]}
        self._auto_jit = jit_compile == "auto"
        self._lowered: set = set()  # stages whose step was checked to compile with XLA
        self.jit: bool | None  # None: still measuring
        if world_size > 1:  # strategy.run does not go inside an XLA cluster
            self.jit, self.reason = False, f"{world_size} replicas: XLA is not used"
        elif jit_compile != "auto":
            self.jit = bool(jit_compile)
            self.reason = "set by jit_compile"
        elif varying_shapes:
            self.jit, self.reason = False, "auto: batches of varying shapes (XLA compiles each shape anew)"
        elif gpu_visible():
            self.jit, self.reason = True, "auto: GPU visible"
        elif fixed_rule:
            self.jit, self.reason = False, "auto: CPU, deterministic or anomaly-checking run"
        elif planned_batches is not None and planned_batches < MIN_STEPS_TO_PROBE:
            self.jit, self.reason = False, f"auto: CPU, run shorter than {MIN_STEPS_TO_PROBE} steps"
        elif unknown_length and planned_batches is None:
            self.jit, self.reason = False, "auto: CPU, data of unknown length (not measured)"
        else:
            self.jit, self.reason = None, "auto: measuring"

    @property
    def probing(self) -> bool:
        return self.jit is None

    def train_chunk(self) -> int:
        """The largest training call now (the plan ends it earlier where something looks)."""
        if not self.auto_chunk:
            return self.chunk
        if self.every_batch:
            return 1
        return self.chunk if self.workers == 1 else MAX_CHUNK

    def eval_chunk(self) -> int:
        """The size of evaluation calls: the training chunk once it was measured, else 32."""
        if not self.auto_chunk:
            return self.chunk
        if self.every_batch:
            return 1
        return self.chunk if self.seconds_per_step is not None and self.workers == 1 else 32

    def run(self, steps, stage, feed, n: int, batch_idx: int = 0):
        """Runs one compiled call of ``n`` steps through ``steps`` (a
        `CompiledSteps`) with this tuner's XLA choice, and learns from
        its duration; returns what ``steps.run`` returns."""
        if stage is TRAIN:
            jit, timed = self.next_call()
        else:  # evaluation follows the training choice
            jit = bool(self.jit)
            timed = False
        built = steps.functions_built  # before the XLA check, which may build the loop it lowers
        if jit and self._auto_jit and not steps.run_eagerly and stage.name not in self._lowered:
            self._lowered.add(stage.name)
            error = steps.lowering_error(stage, feed)
            if error is not None:
                self.xla_failed(error)
                jit = False
        start = time.perf_counter()
        ran, outputs = steps.run(stage, feed, n, batch_idx, jit=jit)
        if stage is TRAIN:
            if timed:
                ran = int(ran)  # a device sync, only while timing XLA against the plain step
            self.record(jit=jit, timed=timed, steps=n, seconds=time.perf_counter() - start,
                        first_call=steps.functions_built > built)
        return ran, outputs

    def next_call(self) -> tuple[bool, bool]:
        """Returns ``(use XLA, time this call with a device sync)`` for the next training call."""
        if self.jit is None:
            return _PROBE[self._calls]
        return self.jit, False

    def xla_failed(self, error: Exception) -> None:
        """The step does not compile with XLA: use the plain step from now on."""
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        self.jit, self.reason = False, f"auto: XLA cannot compile the step ({first_line[:160]})"

    def record(self, *, jit: bool, timed: bool, steps: int, seconds: float, first_call: bool) -> None:
        """Takes the duration of a training call of ``steps`` steps (``first_call``: it traced)."""
        probing = self.jit is None
        if probing:
            if timed and steps:
                self._samples[jit][0] += seconds
                self._samples[jit][1] += steps
            self._calls += 1
            if self._calls == len(_PROBE):
                self._decide()
        # While measuring XLA the chunk is sized once (after the first timed call), so that both
        # variants are timed on calls of the same size.
        if first_call or steps <= 0 or not self.auto_chunk or (probing and self._calls != 2):
            return
        per_step = seconds / steps
        self.seconds_per_step = per_step if self.seconds_per_step is None else (
            0.7 * self.seconds_per_step + 0.3 * per_step)
        wanted = int(TARGET_CALL_SECONDS / max(self.seconds_per_step, 1e-7))
        # Short calls while measuring, so that the measurement ends within the first epoch.
        self.chunk = max(1, min(PROBE_CHUNK if probing else MAX_CHUNK, wanted))

    def _decide(self) -> None:
        (plain, plain_steps), (xla, xla_steps) = self._samples[False], self._samples[True]
        if not plain_steps or not xla_steps:
            self.jit, self.reason = False, "auto: too few steps to measure"
            return
        plain, xla = plain / plain_steps, xla / xla_steps
        self.jit = xla <= XLA_MARGIN * plain
        self.reason = (f"auto: measured {xla * 1e6:.0f} us/step with XLA, {plain * 1e6:.0f} us/step "
                       "without")

    def state_dict(self) -> dict:
        """The XLA choice, so that a resumed run computes exactly as the interrupted one."""
        return {"jit": -1 if self.jit is None else int(self.jit), "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("jit", -1)) >= 0:
            self.jit = bool(int(state["jit"]))
            self.reason = str(state.get("reason", "restored"))
