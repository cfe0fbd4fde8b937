"""Plain functions the Trainer uses before its loops start: data, limits, callbacks, building."""

from __future__ import annotations

import sys

import keras
import tensorflow as tf

from kerastrainer.callbacks.base import Callback
from kerastrainer.data import DataModule, to_source
from kerastrainer.data.sources import _is_generator
from kerastrainer.module import TrainModule, _user_loss, unpack_batch
from kerastrainer.steps import trainable_candidates


def resolve_strategy(strategy):
    """Turns the ``strategy`` flag into a ``tf.distribute.Strategy``.

    ``"auto"``: MultiWorkerMirrored when ``TF_CONFIG`` names a cluster of several tasks, Mirrored when
    several GPUs are visible, else the default (no distribution). ``"mirrored"`` uses every local GPU,
    or every logical CPU device when there is no GPU (tests configure two at process start).
    """
    from kerastrainer.distributed.strategies import make_strategy

    if strategy is None:
        strategy = "auto"
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if isinstance(strategy, str) and strategy in ("auto", "one_device", "mirrored", "multi_worker"):
        return make_strategy(strategy)
    raise ValueError(
        "`strategy` must be 'auto', 'one_device', 'mirrored', 'multi_worker' or a "
        f"tf.distribute.Strategy instance. Received: strategy={strategy!r}"
    )


def build_callbacks(callbacks, trainer) -> list:
    """Normalises the ``callbacks`` flag and adds the defaults the other flags ask for."""
    from kerastrainer.callbacks.keras_adapter import KerasCallbackAdapter
    from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
    from kerastrainer.callbacks.model_summary import ModelSummary
    from kerastrainer.callbacks.progress import RichProgressBar

    if callbacks is None:
        callbacks = []
    elif isinstance(callbacks, (Callback, keras.callbacks.Callback)):
        callbacks = [callbacks]
    result, keras_callbacks = [], []
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.Callback):
            if not keras_callbacks:
                result.append(None)  # the adapter takes the place of the first Keras callback
            keras_callbacks.append(callback)
        elif isinstance(callback, Callback):
            result.append(callback)
        else:
            raise TypeError(
                "`callbacks` must hold kerastrainer.Callback or keras.callbacks.Callback objects. "
                f"Received an item of type {type(callback).__name__}: {callback!r}"
            )
    if keras_callbacks:
        result[result.index(None)] = KerasCallbackAdapter(keras_callbacks)
    chief = trainer.is_global_zero  # the other workers print nothing
    if chief and trainer.enable_progress_bar and not any(isinstance(c, RichProgressBar)
                                                          for c in result):
        result.append(RichProgressBar())
    if chief and trainer.enable_model_summary and not trainer.fast_dev_run and not any(
            isinstance(c, ModelSummary) for c in result):
        result.append(ModelSummary())
    if trainer.enable_checkpointing and not trainer.fast_dev_run and not any(
            isinstance(c, ModelCheckpoint) for c in result):
        result.append(ModelCheckpoint())
    return result


def resolve_data(stage, data, datamodule, method, name, *, batch_size, shuffle):
    """Returns the :class:`~kerastrainer.data.Source` for one stage, from data or a DataModule."""
    if datamodule is not None:
        if not isinstance(datamodule, DataModule):
            raise TypeError(
                f"`datamodule` must be a kerastrainer.DataModule. Received: {type(datamodule).__name__}"
            )
        if data is not None:
            raise ValueError(
                f"Pass either {name}=... or datamodule=..., not both. Received both for {name}."
            )
        if stage is not None:
            datamodule.prepare_data()
            datamodule.setup(stage)
        data = getattr(datamodule, method)()
        if batch_size is None:
            batch_size = getattr(datamodule, "batch_size", None)
        name = f"{type(datamodule).__name__}.{method}()"
        if batch_size is not None and not _is_array_data(data):
            batch_size = None  # the DataModule's batch_size is for its array splits
    return to_source(data, batch_size=batch_size, shuffle=shuffle, name=name)


def _is_array_data(data) -> bool:
    return not (isinstance(data, (tf.data.Dataset, keras.utils.PyDataset)) or _is_generator(data))


def limit_batches(flag, source, flag_name):
    """Batches per epoch/run after a ``limit_*`` flag; ``None`` means unknown length (run to the end).

    Raises:
        ValueError: a fraction of data of unknown or infinite length, or one that gives 0 batches.
    """
    if source is None:
        return 0
    n = source.num_batches
    if isinstance(flag, int) and not isinstance(flag, bool):
        return flag if n is None else min(flag, n)
    if source.infinite or (n is None and flag != 1.0):
        raise ValueError(
            f"`{flag_name}` is a fraction ({flag}), but the data has "
            f"{'infinite' if source.infinite else 'unknown'} length. Pass an int number of batches, "
            f"e.g. {flag_name}=100."
        )
    if n is None:
        return None
    limited = int(n * flag)
    if limited == 0 and flag > 0:
        raise ValueError(
            f"`{flag_name}`={flag} of {n} batches gives 0 batches. Increase it or pass an int. "
            f"Received: {flag_name}={flag}"
        )
    return limited


def epoch_limit(max_epochs):
    """The end of the epoch range; ``-1`` means no limit."""
    return max_epochs if max_epochs >= 0 else sys.maxsize


def ensure_built(module, element_spec, step: str) -> None:
    """Builds the module's variables from the data's spec (before anything is compiled).

    Args:
        module: the TrainModule.
        element_spec: the spec of one batch.
        step: the step that will consume the batches (named in errors).

    Raises:
        ValueError: the batch structure hides the inputs and the module is not built yet.
    """
    if module.built and module._kt_input_spec is not None:
        return
    try:
        x_spec, _, _ = unpack_batch(element_spec, f"{type(module).__name__}.{step}")
    except ValueError:
        if getattr(type(module), step) is getattr(TrainModule, step):
            raise  # the default step will fail the same way: say so now
        if module.built:
            return
        raise ValueError(
            f"{type(module).__name__} is not built and its inputs cannot be found in batches of "
            f"structure {element_spec}. Build it before training, e.g. module.build((None, 784)) or "
            "module(sample_x), so the optimizer can be created before the step is compiled."
        ) from None
    build_from_spec(module, x_spec)


def build_from_spec(module, x_spec) -> None:
    """Builds ``module`` from the spec of its inputs (batch dimension ``None``) and records the spec."""
    if not module.built:
        # A symbolic call builds every layer and keeps `None` batch sizes in module.summary(); a few
        # models cannot run symbolically, and a concrete batch of zeros builds those.
        try:
            module(tf.nest.map_structure(lambda s: keras.KerasTensor(s.shape, s.dtype), x_spec))
        except Exception:  # noqa: BLE001 - any failure just means: build with real tensors
            module(tf.nest.map_structure(
                lambda s: tf.zeros([1 if d is None else d for d in s.shape], s.dtype), x_spec
            ), training=False)
    if module._kt_input_spec is None:
        object.__setattr__(module, "_kt_input_spec", x_spec)

def val_interval(flag, n_train):
    """Training batches between validation runs within an epoch; ``None``: at the epoch end only.

    Raises:
        ValueError: a fractional interval with data of unknown length, or an int interval longer
            than the epoch.
    """
    if isinstance(flag, float):
        if n_train is None:
            if flag != 1.0:
                raise ValueError(
                    "`val_check_interval` is a fraction, but train_data has unknown length. Use an "
                    f"int number of batches. Received: val_check_interval={flag}")
            return None
        return max(1, int(n_train * flag))
    if n_train is not None and flag > n_train:
        raise ValueError(
            f"`val_check_interval` ({flag}) must be at most the number of training batches per "
            f"epoch ({n_train}). Received: val_check_interval={flag}")
    return flag


def prepare_module(module, logs, source, *, step, strategy, clip_val=None, clip_algorithm="norm",
                   loss_scaling=False):
    """Makes ``module`` ready for ``step`` inside ``strategy``'s scope: built from the data's spec,
    each stage's metrics configured once, and (for training) a fresh optimizer, built eagerly so
    no variable is created lazily inside a compiled step.

    Returns:
        The normalised ``lr_scheduler`` configuration, or ``None``.

    Raises:
        NotImplementedError: training a module with neither ``loss`` nor ``training_step``.
        TypeError: ``configure_optimizer`` returned something else than an optimizer.
    """
    for_training = step == "training_step"
    with strategy.scope():
        ensure_built(module, source.element_spec, step)
        for stage in ("train", "val", "test") if for_training else ("val", "test"):
            if stage not in logs.stages:
                logs.configure(stage, module.configure_metrics())
        if for_training:
            if type(module).training_step is TrainModule.training_step and _user_loss(module) is None:
                raise NotImplementedError(module._no_loss_message())
            optimizer, scheduler = check_optimizer(module, module.configure_optimizer())
            if loss_scaling and isinstance(optimizer, keras.optimizers.Optimizer) and \
                    not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # float16 gradients
            if not isinstance(optimizer, dict):
                # Built on frozen variables too, so unfreezing later (fine-tuning) needs no rebuild.
                optimizer.build(trainable_candidates(module))
            else:
                unbuilt = [name for name, opt in optimizer.items() if not opt.built]
                if unbuilt:
                    raise ValueError(
                        f"{type(module).__name__}.configure_optimizer(): with manual optimization, build "
                        f"each optimizer on its variables there (not built: {unbuilt}), e.g. "
                        "`opt.build(self.generator.trainable_variables)`; the Trainer cannot know "
                        "which variables each optimizer updates.")
            if clip_val is not None:
                for opt in optimizer.values() if isinstance(optimizer, dict) else [optimizer]:
                    set_gradient_clipping(opt, clip_val, clip_algorithm)
            module.optimizer = optimizer
            return scheduler
    return None


def build_loggers(logger, default_root_dir) -> list:
    """Normalises the ``logger`` flag: ``True`` is CSV (+ TensorBoard when installed), one version."""
    from kerastrainer.loggers import CSVLogger, Logger, TensorBoardLogger, tensorboard_available

    if logger is True:
        csv_logger = CSVLogger(default_root_dir)
        loggers = [csv_logger]
        if tensorboard_available():  # same run folder: the version is fixed now, shared
            loggers.append(TensorBoardLogger(default_root_dir, version=csv_logger.version))
        return loggers
    if logger is False or logger is None:
        return []
    items = list(logger) if isinstance(logger, (list, tuple)) else [logger]
    for item in items:
        if not isinstance(item, Logger):
            raise TypeError(
                "`logger` must be True, False, a kerastrainer.loggers.Logger or a list of them. "
                f"Received an item of type {type(item).__name__}: {item!r}")
        item.attach(default_root_dir)
    return items


def set_gradient_clipping(optimizer, value, algorithm) -> None:
    """Makes the optimizer clip (global norm or value) inside ``apply``, i.e. after loss-scale
    unscaling and after accumulation.

    Raises:
        ValueError: the optimizer already clips (``clipnorm``/``global_clipnorm``/``clipvalue``).
    """
    target = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer: its inner one
    if target.clipnorm or target.global_clipnorm or target.clipvalue:
        raise ValueError(
            "gradient_clip_val is set, but the optimizer already clips (clipnorm, global_clipnorm or "
            "clipvalue). Use one of the two. Received: "
            f"gradient_clip_val={value}, optimizer={type(target).__name__}")
    if algorithm == "norm":
        target.global_clipnorm = float(value)
    else:
        target.clipvalue = float(value)


_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_validation_batch_start",
                "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end")


def _overrides(obj, base) -> bool:
    return any(getattr(type(obj), name, None) is not getattr(base, name) for name in _BATCH_HOOKS)


def chunk_plan(callbacks, module, loggers, log_every_n_steps) -> tuple[bool, list]:
    """What ``steps_per_execution="auto"`` must respect.

    Returns:
        ``(per_batch, intervals)``: ``per_batch`` when a callback that is not ``chunk_aware`` (or the
        module) overrides a batch hook, so it sees every batch as it would in Lightning; ``intervals``,
        the optimizer-step intervals at which chunks must end (the loggers', callbacks' own).
    """
    per_batch = _overrides(module, TrainModule) or any(
        not c.chunk_aware and _overrides(c, Callback) for c in callbacks)
    intervals = [log_every_n_steps] if loggers else []
    intervals += [i for i in (c.step_interval(module.trainer) for c in callbacks) if i]
    return per_batch, sorted(set(intervals))


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
