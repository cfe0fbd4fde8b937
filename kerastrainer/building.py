"""Building a module before anything is compiled: batch structure, variables, input signature.

A module whose step is the default one is built by calling it (``call``) on its inputs' spec. A
module with its own step is built by tracing that step once on the batch's spec, without running
it, as Keras's ``fit`` builds what a custom ``train_step`` uses: every layer the step calls (one that
``call`` never touches, such as an autoencoder's decoder) and a manual optimization's optimizers
are created before anything is compiled, and ``call`` is never made on data it was not written for
(a GAN's generator takes latent vectors, not the images of a batch).
"""

from __future__ import annotations

import contextlib
import inspect
import threading

import keras
import tensorflow as tf

from kerastrainer.hooks import overrides
from kerastrainer.refusals import surfacing, unwrapped
from kerastrainer.stages import PREDICT, TEST, TRAIN, VAL


# do_not_convert: plain Python over static shapes that calls no user code; AutoGraph rewriting it
# only made the first trace of every process slower (docs/performance.md, "First epoch").
@tf.autograph.experimental.do_not_convert
def unpack_batch(batch, where: str):
    """Splits a batch into ``(x, y, sample_weight)`` the way Keras's ``fit`` does.

    Args:
        batch: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; lists and dicts are ``x``.
        where: the step that unpacks, for the error message.

    Raises:
        ValueError: a tuple of another length.
    """
    if not isinstance(batch, tuple):
        return batch, None, None
    if 1 <= len(batch) <= 3:
        return tuple(batch) + (None,) * (3 - len(batch))
    raise ValueError(
        f"{where} received a batch that is a tuple of {len(batch)} elements. The default step unpacks "
        "x, (x,), (x, y) or (x, y, sample_weight). Return one of these structures from your data, or "
        f"override {where.rsplit('.', 1)[-1]}(self, batch, batch_idx) to unpack it yourself."
    )


@tf.autograph.experimental.do_not_convert
def takes_batch_idx(method) -> bool:
    """Whether a step method accepts ``batch_idx`` after the batch."""
    params = [
        p for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def call_step(method, batch, batch_idx, dataloader_idx=None):
    """Calls a user's step with ``batch_idx`` when its signature takes it, and with
    ``dataloader_idx`` (a Python int: which of several datasets) when it names that argument;
    ``0`` for the only dataset when the argument has no default."""
    wanted = inspect.signature(method).parameters.get("dataloader_idx")
    if wanted is not None and (dataloader_idx is not None or wanted.default is wanted.empty):
        return method(batch, batch_idx, dataloader_idx=dataloader_idx or 0)
    return method(batch, batch_idx) if takes_batch_idx(method) else method(batch)


@tf.autograph.experimental.do_not_convert
def batch_size_of(batch):
    """The rows of a batch (its first tensor's leading dimension), as float32."""
    return tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32)


def ensure_built(module, stage, element_spec, *, base, recorder=None, eager: bool = False) -> None:
    """Builds the module's variables for ``stage`` from the data's spec (before anything is
    compiled): by calling it on the inputs for a default step, by tracing the step otherwise.

    With ``eager`` (``run_eagerly=True``) a step that cannot be traced (Python on tensor values:
    ``.numpy()``, ``int(tf.shape(x)[0])``, ``pdb``) builds the module by calling it on the inputs,
    as Keras builds a model before running its ``train_step`` eagerly; what the step alone
    creates is created by its first, eager, run.

    Args:
        module: the TrainModule.
        stage: the `stages` stage whose step will consume the batches.
        element_spec: the spec of one batch.
        base: the class whose step is the default one (``TrainModule``).
        recorder: the run's `StepRecorder` (``self.log`` in the traced step creates its variables).
        eager: the steps run eagerly (``run_eagerly``).

    Raises:
        ValueError: a default step cannot find the inputs in the batch structure.
    """
    where = f"{type(module).__name__}.{stage.step}"
    default = not overrides(module, stage.step, base)
    if default:
        _refuse_text_targets(unpack_or_whole(element_spec, where, part=1), where)
    if module.input_signature is not None and (module.built or module.build_recipe is not None):
        check_stage_inputs(module, stage, element_spec, base=base)
        return
    if default:  # the default step: call() builds the module
        x_spec, _, _ = unpack_batch(element_spec, where)
        build_from_spec(module, x_spec)
        return
    if module.build_recipe is None:
        try:
            trace_step(module, stage, element_spec, recorder)
        except Exception:  # noqa: BLE001 - re-raised unless the step will run eagerly anyway
            if not eager:
                raise
            x_spec = unpack_or_whole(element_spec, where)
            build_from_spec(module, x_spec)
            return
    module.set_input_signature(unpack_or_whole(element_spec, where),
                               build_recipe={"step": stage.step, "batch": element_spec})


def check_stage_inputs(module, stage, element_spec, *, base) -> None:
    """`check_inputs_match` for the batches of ``stage`` when its default step calls the module on
    their ``x`` (a step of the user's own may feed the module something else)."""
    if module.input_signature is None or overrides(module, stage.step, base):
        return
    where = f"{type(module).__name__}.{stage.step}"
    check_inputs_match(module, unpack_or_whole(element_spec, where), stage.data_name)


def check_inputs_match(module, x_spec, data_name: str) -> None:
    """Refuses inputs whose shapes differ from those the module was built on (the batch axis
    aside), before a layer refuses them from inside the compiled step.

    Raises:
        ValueError: naming both shapes; an unbatched ``tf.data`` pipeline is named as such.
    """
    built = module.input_signature
    try:
        tf.nest.assert_same_structure(built, x_spec)
    except (TypeError, ValueError):
        return  # another structure: the model's own call says what it expects
    for was, now in zip(tf.nest.flatten(built), tf.nest.flatten(x_spec)):
        if not (isinstance(was, tf.TensorSpec) and isinstance(now, tf.TensorSpec)):
            continue
        if was.shape.rank is None or now.shape.rank is None:
            continue
        if now.shape.rank == was.shape.rank - 1 and now.shape.is_compatible_with(was.shape[1:]):
            raise ValueError(
                f"{data_name} gives single examples of shape {tuple(now.shape)}, but "
                f"{type(module).__name__} was built on batches of shape {tuple(was.shape)}: is the "
                "tf.data dataset batched? Call dataset.batch(batch_size) before passing it. "
                f"Received: inputs of shape {tuple(now.shape)}")
        if now.shape.rank != was.shape.rank or not now.shape[1:].is_compatible_with(was.shape[1:]):
            raise ValueError(
                f"{data_name} has inputs of shape {tuple(now.shape)}, but {type(module).__name__} "
                f"was built on inputs of shape {tuple(was.shape)}: the features differ. Pass data "
                "with the features the module was trained on, or make a new module for these. "
                f"Received: inputs of shape {tuple(now.shape)}")


def unpack_or_whole(element_spec, where: str, part: int = 0):
    """A part of a batch (its ``x``; ``part=1``: its ``y``), or the whole batch when it does not
    unpack."""
    try:
        return unpack_batch(element_spec, where)[part]
    except ValueError:  # the step unpacks its batches itself
        return element_spec


def _refuse_text_targets(y_spec, where: str) -> None:
    """String targets cannot reach a loss (inputs may be text: a TextVectorization layer reads it).

    Raises:
        ValueError: naming the dtype and how to make the labels numbers.
    """
    if y_spec is None:
        return
    if any(getattr(spec, "dtype", None) == tf.string for spec in tf.nest.flatten(y_spec)):
        raise ValueError(
            f"{where}: the targets (y) are strings, and a loss needs numbers. Map the labels to "
            "integers first: classes, y = np.unique(y, return_inverse=True), or "
            "keras.layers.StringLookup in the tf.data pipeline. Received: y of dtype string")


def trace_step(module, stage, element_spec, recorder=None) -> None:
    """Traces ``stage``'s step of ``module`` once on placeholders of ``element_spec``, without
    running it, so that every variable the step creates exists (layers are built on first use,
    optimizers on their first ``apply``); the module then counts as built."""
    step = stage.step_fn(module)

    def one_step(batch):
        recording = (recorder.recording(stage, batch_size_of(batch))
                     if recorder is not None and stage.name in recorder.stages  # not prediction
                     else contextlib.nullcontext())
        with recording:
            call_step(step, batch, tf.constant(0, tf.int64))

    def run(batch):  # in a replica's context, as the compiled step runs (the step may ask for it)
        tf.distribute.get_strategy().run(one_step, args=(batch,))

    with surfacing():
        tf.function(run).get_concrete_function(element_spec)
    if not module.built:
        module.built = True  # every sublayer the step uses is built now (summary() lists them)


def build_from_spec(module, x_spec) -> None:
    """Builds ``module`` from the spec of its inputs (batch dimension ``None``) and records it as
    ``module.input_signature``."""
    if not module.built:
        # A symbolic call builds every layer and keeps `None` batch sizes in module.summary(); a few
        # models cannot run symbolically, and a concrete batch of zeros builds those.
        try:
            module(tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype), x_spec))
        except Exception:  # noqa: BLE001 - any failure just means: build with real tensors
            try:
                module(tf.nest.map_structure(
                    lambda s: tf.zeros([1 if d is None else d for d in s.shape], s.dtype), x_spec
                ), training=False)
            except Exception as error:  # noqa: BLE001 - re-raised, with a hint when unbatched
                _raise_if_unbatched(x_spec, error)
                original = unwrapped(error)  # Keras's "Exception encountered when calling" aside
                if original is not error:
                    raise original from None
                raise
    if module.input_signature is None:
        module.set_input_signature(x_spec)


def _raise_if_unbatched(x_spec, error) -> None:
    """Explains a failed build on data without a batch dimension (a ``tf.data`` pipeline that was
    never batched gives single examples, which the model's layers reject)."""
    shapes = [spec.shape for spec in tf.nest.flatten(x_spec)]
    if any(shape.rank and shape[0] is None for shape in shapes):
        return  # batched: the leading dimension is the (unknown) batch size
    raise ValueError(
        "The model could not be called on the data's inputs, whose shapes "
        f"{[tuple(shape) for shape in shapes]} have no batch dimension: is the tf.data dataset "
        "batched? Call dataset.batch(batch_size) before passing it (kerastrainer batches arrays "
        f"itself, not datasets). The model said: {str(error).splitlines()[0]}") from error


def trainable_candidates(module) -> list:
    """Every variable that is trainable now or becomes so when its layer is unfrozen."""
    found = []
    seen = set()
    for layer in module._flatten_layers(include_self=True):
        for variable in layer._trainable_variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found or list(module.trainable_variables)


_LOCAL = threading.local()


def rebuilding() -> bool:
    """Whether a module is being rebuilt outside a Trainer (its ``self.log`` calls do nothing)."""
    return getattr(_LOCAL, "rebuilding", False)


def rebuild_by_step(module, step: str, batch_spec) -> None:
    """Builds a module outside a Trainer the way its step built it in one (``load_from_checkpoint``):
    one trace of ``step`` on ``batch_spec``, with a manual optimization's optimizers from
    ``configure_optimizer()`` (the step applies them), ``self.log`` calls ignored."""
    stage = next(s for s in (TRAIN, VAL, TEST, PREDICT) if s.step == step)
    if not module.automatic_optimization:
        optimizer = module.configure_optimizer()
        module.optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) and isinstance(
            optimizer.get("optimizer"), keras.optimizers.Optimizer) else optimizer
    _LOCAL.rebuilding = True
    try:
        trace_step(module, stage, batch_spec)
    finally:
        _LOCAL.rebuilding = False
    module.set_input_signature(unpack_or_whole(batch_spec, f"{type(module).__name__}.{step}"),
                               build_recipe={"step": step, "batch": batch_spec})
