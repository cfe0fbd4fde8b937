"""The Trainer: fit / validate / test / predict as plain nested loops with every hook inline."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import time
import warnings

import numpy as np
import tensorflow as tf

from kerastrainer import flags
from kerastrainer.callbacks.bus import CallbackBus
from kerastrainer.checkpoint import (build_checkpoint, checkpoint_dirs, resolve_ckpt_path,
                                     restore_training_state, restore_weights)
from kerastrainer.checkpoint_io import read_checkpoint, write_checkpoint
from kerastrainer.logging import LogCollector
from kerastrainer.lr import step_scheduler
from kerastrainer.module import TrainModule
from kerastrainer.precision import normalize_precision, precision_scope
from kerastrainer.profiler import make_profiler
from kerastrainer.autotune import MAX_CHUNK, StepTuner, planned_batches
from kerastrainer.data.feeds import ArrayFeed, IteratorFeed
from kerastrainer.distributed.launch import mark_ready
from kerastrainer.distributed.strategies import Agreement, global_rank, num_workers
from kerastrainer.run_setup import (build_callbacks, build_loggers, chunk_plan, epoch_limit,
                                    limit_batches, prepare_module, resolve_data, resolve_strategy,
                                    val_interval)
from kerastrainer.seed import last_seed, seed_everything
from kerastrainer.signals import EXIT_CODES, SignalCatcher
from kerastrainer.steps import CompiledSteps

_HOOK_PREFIX = {"val": "validation", "test": "test"}


class Trainer:
    """Runs a :class:`~kerastrainer.TrainModule`: the epoch/batch loop, compiled steps, metrics,
    callbacks and progress.

    Args:
        max_epochs: stop after this many epochs; ``-1`` for no limit. Default: 1000, or no limit
            when ``max_steps`` is set.
        min_epochs: ignore ``should_stop`` (early stopping) before this many epochs.
        max_steps: stop after this many optimizer steps; ``-1`` for no limit.
        max_time: stop after this much time: seconds, a ``timedelta``, a dict or ``"DD:HH:MM:SS"``.
        limit_train_batches: batches per training epoch: an int, or a float fraction of the data.
        limit_val_batches: the same for each validation run (``0`` disables validation).
        limit_test_batches: the same for ``test``.
        limit_predict_batches: the same for ``predict``.
        val_check_interval: validate every N training batches (int) or every fraction of an epoch.
        check_val_every_n_epoch: validate in every n-th epoch only.
        num_sanity_val_steps: validation batches run before training to catch bugs early (``-1``: all).
        fast_dev_run: run ``n`` batches (``True``: 1) of every stage once, as a smoke test.
        overfit_batches: train and validate on this many training batches (unshuffled).
        steps_per_execution: training/evaluation steps per compiled call; batch hooks fire per call.
            ``"auto"`` (default) sizes calls to about 50 ms from measured step time, ending them
            where loggers, validation and step-interval callbacks need; one batch per call when a
            callback that is not ``chunk_aware`` (or the module) overrides a batch hook.
        jit_compile: compile the steps with XLA. ``"auto"`` (default): on a GPU whenever the step
            compiles; on a CPU when it measured faster on the run's first batches (runs planned
            shorter than 500 batches, ``deterministic`` and ``detect_anomaly`` runs stay plain).
            Under a strategy of several replicas the steps run without XLA.
        run_eagerly: run the steps as plain Python (debugging; slow).
        deterministic: seed (``kt.seed_everything``'s last seed, else 0) and enable TensorFlow's op
            determinism, so two runs give bitwise equal weights.
        accumulate_grad_batches: sum the gradients of this many batches and apply their mean once;
            ``global_step`` counts optimizer steps. An epoch's leftover batches are applied at its end.
        gradient_clip_val: clip gradients to this global norm (or value), inside the optimizer's
            ``apply``, i.e. after accumulation and loss-scale unscaling.
        gradient_clip_algorithm: ``"norm"`` (global norm) or ``"value"``.
        detect_anomaly: check in the compiled step that the loss and every gradient are finite;
            the run stops with an error naming the step and the value.
        precision: ``"32"``, ``"mixed_float16"`` (with dynamic loss scaling) or ``"mixed_bfloat16"``;
            the Keras dtype policy is set for the run and restored after it.
        strategy: ``"auto"``, ``"one_device"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy``. Batch sizes are global: each replica gets its share.
        callbacks: a callback or a list; ``kt.Callback`` and ``keras.callbacks.Callback`` both work.
        logger: ``True`` for a CSV logger (plus TensorBoard when the ``tensorboard`` package is
            installed) in ``<default_root_dir>/kt_logs/version_N``; ``False`` for none; a
            :class:`~kerastrainer.loggers.Logger` or a list of them.
        log_every_n_steps: how often loggers receive (and read from the device) training values.
        enable_progress_bar: add a :class:`~kerastrainer.callbacks.RichProgressBar` if none is given.
        enable_checkpointing: accepted for the upcoming checkpoint callback; ``False`` disables it.
        enable_model_summary: print the model summary when fit starts.
        default_root_dir: where logs and checkpoints go (default: the working directory).
        profiler: ``None``, ``"simple"`` (time per hook and phase, a table at the end), ``"tf"``
            (plus a ``tf.profiler`` trace of a few steps) or a profiler instance.

    Raises:
        TypeError, ValueError: a flag of the wrong type or range; the message names it.

    Example:
        >>> trainer = Trainer(max_epochs=3, enable_progress_bar=False)  # doctest: +SKIP
        >>> trainer.fit(module, train_data=(x, y), val_data=(x_val, y_val))  # doctest: +SKIP
    """

    def __init__(self, *, max_epochs=None, min_epochs=None, max_steps=-1, max_time=None,
                 limit_train_batches=1.0, limit_val_batches=1.0, limit_test_batches=1.0,
                 limit_predict_batches=1.0, val_check_interval=1.0, check_val_every_n_epoch=1,
                 num_sanity_val_steps=2, fast_dev_run=False, overfit_batches=0.0,
                 steps_per_execution="auto", jit_compile="auto", run_eagerly=False, deterministic=False,
                 accumulate_grad_batches=1, gradient_clip_val=None, gradient_clip_algorithm="norm",
                 detect_anomaly=False, precision="32",
                 strategy="auto", callbacks=None, logger=True, log_every_n_steps=50,
                 enable_progress_bar=True, enable_checkpointing=True, enable_model_summary=True,
                 default_root_dir=None, profiler=None):
        self.max_steps = flags.int_at_least("max_steps", max_steps, -1, "-1 means no limit")
        if max_epochs is None:
            max_epochs = 1000 if self.max_steps == -1 else -1
        self.max_epochs = flags.int_at_least("max_epochs", max_epochs, -1, "-1 means no limit")
        self.min_epochs = flags.optional_int("min_epochs", min_epochs, 0) or 0
        self.max_time = flags.max_time(max_time)
        self.limit_train_batches = flags.batches_or_fraction("limit_train_batches", limit_train_batches)
        self.limit_val_batches = flags.batches_or_fraction("limit_val_batches", limit_val_batches)
        self.limit_test_batches = flags.batches_or_fraction("limit_test_batches", limit_test_batches)
        self.limit_predict_batches = flags.batches_or_fraction("limit_predict_batches",
                                                               limit_predict_batches)
        self.val_check_interval = flags.val_check_interval(val_check_interval)
        self.check_val_every_n_epoch = flags.int_at_least("check_val_every_n_epoch",
                                                          check_val_every_n_epoch, 1)
        self.num_sanity_val_steps = flags.int_at_least("num_sanity_val_steps", num_sanity_val_steps,
                                                       -1, "-1 runs all validation batches")
        self.fast_dev_run = flags.fast_dev_run(fast_dev_run)
        self.overfit_batches = flags.batches_or_fraction("overfit_batches", overfit_batches)
        self.steps_per_execution = (steps_per_execution if steps_per_execution == "auto" else
                                    flags.int_at_least("steps_per_execution", steps_per_execution,
                                                       1, "or 'auto'"))
        self.jit_compile = flags.boolean_or_auto("jit_compile", jit_compile)
        self.run_eagerly = flags.boolean("run_eagerly", run_eagerly)
        self.deterministic = flags.boolean("deterministic", deterministic)
        self.accumulate_grad_batches = flags.int_at_least("accumulate_grad_batches",
                                                          accumulate_grad_batches, 1)
        self.gradient_clip_val = flags.clip_value(gradient_clip_val)
        if gradient_clip_algorithm not in ("norm", "value"):
            raise ValueError("`gradient_clip_algorithm` must be 'norm' or 'value'. Received: "
                             f"gradient_clip_algorithm={gradient_clip_algorithm!r}")
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.detect_anomaly = flags.boolean("detect_anomaly", detect_anomaly)
        self.precision = normalize_precision(precision)
        self.log_every_n_steps = flags.int_at_least("log_every_n_steps", log_every_n_steps, 1)
        self.enable_progress_bar = flags.boolean("enable_progress_bar", enable_progress_bar)
        self.enable_checkpointing = flags.boolean("enable_checkpointing", enable_checkpointing)
        self.enable_model_summary = flags.boolean("enable_model_summary", enable_model_summary)
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir else os.getcwd()
        self.strategy = resolve_strategy(strategy)
        self._num_workers = num_workers(self.strategy)
        self._agreement = Agreement(self.strategy) if self._num_workers > 1 else None
        mark_ready()  # tells `kerastrainer launch` this worker is up (no-op otherwise)
        # Only the chief logs, prints and writes files (see save_checkpoint for the others).
        self.loggers = build_loggers(logger if not self.fast_dev_run and self.is_global_zero
                                     else False, self.default_root_dir)
        self.profiler = make_profiler(profiler)
        if self.fast_dev_run:
            n = self.fast_dev_run
            self.max_epochs, self.max_steps, self.num_sanity_val_steps = 1, n, 0
            self.limit_train_batches = self.limit_val_batches = n
            self.limit_test_batches = self.limit_predict_batches = n
            self.val_check_interval = 1.0
        self.callbacks = build_callbacks(callbacks, self)
        if self.deterministic:
            seed_everything(last_seed() if last_seed() is not None else 0)
            tf.config.experimental.enable_op_determinism()

        self.current_epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.sanity_checking = False
        self.stage: str | None = None
        self.num_training_batches: int | None = None
        self.num_val_batches: int | None = None
        self.num_test_batches: int | None = None
        self.num_predict_batches: int | None = None
        self.module: TrainModule | None = None
        self._logs = self._new_log_collector()
        self._compiled: CompiledSteps | None = None
        self._bus: CallbackBus | None = None
        self._fit_data = None
        self._start_time = None
        self._train_source = None
        self._datamodule = None
        self._ckpt_file = None
        self._batches_done, self._epoch_done, self._validated_at = 0, False, None
        self._lr_scheduler = None
        self._per_batch, self._chunk_intervals = False, []
        self.history: dict[str, list] = {}

    # ------------------------------------------------------------------ public state
    @property
    def callback_metrics(self) -> dict:
        """Every value of the run as Python floats (read from the device when stale)."""
        return self._logs.callback_metrics()

    @property
    def logged_metrics(self) -> dict:
        """The values sent to loggers (``callback_metrics`` minus ``self.log(..., logger=False)``)."""
        return {k: v for k, v in self.callback_metrics.items() if k not in self._logs.hidden_keys}

    @property
    def progress_bar_metrics(self) -> dict:
        """The values the progress bar shows: losses, metrics and ``self.log(..., prog_bar=True)``."""
        logs = self._logs
        return {k: v for k, v in self.callback_metrics.items()
                if k in logs.prog_bar_keys or k not in logs.user_keys}

    @property
    def logger(self):
        """The first logger, or ``None``."""
        return self.loggers[0] if self.loggers else None

    @property
    def log_dir(self) -> str:
        """This run's folder: the first logger's ``<name>/version_N``, else ``default_root_dir``."""
        return self.loggers[0].log_dir if self.loggers else self.default_root_dir

    @property
    def world_size(self) -> int:
        """Replicas training in sync (devices over all workers); 1 without distribution."""
        return self._replicas

    @property
    def global_rank(self) -> int:
        """This worker's index (0 on one host)."""
        return global_rank(self.strategy)

    @property
    def is_global_zero(self) -> bool:
        """``True`` in the process that writes files and prints (the chief)."""
        return self.global_rank == 0

    @property
    def trace_counts(self) -> dict:
        """How many times each compiled step was traced (``{"train": 1, "val": 1}`` is ideal)."""
        return dict(self._compiled.trace_counts) if self._compiled else {}

    # ------------------------------------------------------------------ entry points
    def fit(self, module, train_data=None, val_data=None, *, datamodule=None, ckpt_path=None,
            batch_size=None):
        """Trains ``module``, validating as the flags say.

        Args:
            module: a :class:`~kerastrainer.TrainModule`.
            train_data: training data (a batched ``tf.data.Dataset``, arrays, a ``PyDataset``,
                a generator).
            val_data: validation data, same forms.
            datamodule: a :class:`~kerastrainer.DataModule` instead of the two above.
            ckpt_path: resume exactly from a checkpoint: a path, ``"last"`` or ``"best"``.
            batch_size: batch size for array data (default 32).

        Raises:
            ValueError: no training data, data and datamodule both given, or a bad checkpoint.
            TypeError: ``module`` is not a TrainModule.
            FileNotFoundError: ``ckpt_path`` names no file.
            SystemExit: after a graceful SIGTERM/SIGINT stop (a checkpoint was saved first).
        """
        shuffle = not self.overfit_batches
        train = resolve_data("fit", train_data, datamodule, "train_dataset", "train_data",
                             batch_size=batch_size, shuffle=shuffle)
        if train is None:
            raise ValueError(
                "Trainer.fit needs training data. Pass train_data=(x, y), a tf.data.Dataset, or "
                "datamodule=... with a train_dataset() method. Received: train_data=None"
            )
        val = resolve_data(None, val_data, datamodule, "val_dataset", "val_data",
                           batch_size=batch_size, shuffle=False)
        if self.overfit_batches:
            val = train
        self._fit_data = (datamodule, batch_size)
        self._train_source, self._datamodule = train, datamodule
        checkpoint = self._read_checkpoint(ckpt_path)
        for logger, state in zip(self.loggers, (checkpoint or {}).get("loggers", [])):
            logger.load_state_dict(state)  # before any folder is used: resume in the same run
        return self._run("fit", module, datamodule, lambda: self._fit(train, val, checkpoint))

    def validate(self, module=None, data=None, *, datamodule=None, ckpt_path=None, batch_size=None):
        """Runs one validation pass; returns its metrics (``val_loss``, ``val_acc``, ...).

        ``ckpt_path`` (a path, ``"last"`` or ``"best"``) loads those weights first.
        """
        return self._evaluate("val", module, data, datamodule, ckpt_path, batch_size)

    def test(self, module=None, data=None, *, datamodule=None, ckpt_path=None, batch_size=None):
        """Runs one test pass; returns its metrics (``test_loss``, ``test_acc``, ...)."""
        return self._evaluate("test", module, data, datamodule, ckpt_path, batch_size)

    def predict(self, module=None, data=None, *, datamodule=None, ckpt_path=None, batch_size=None):
        """Returns the predictions for ``data`` as NumPy array(s), batches concatenated."""
        module = self._module_or_fitted(module, "predict")
        source = resolve_data("predict", data, datamodule, "predict_dataset", "data",
                              batch_size=batch_size, shuffle=False)
        self._require(source, "predict", "predict_dataset")
        return self._run("predict", module, datamodule,
                         lambda: self._predict(source, ckpt_path))

    def save_checkpoint(self, path, *, weights_only: bool = False) -> None:
        """Writes the run's state to ``path`` (HDF5, atomically: temp file, fsync, rename).

        Args:
            path: the file to write; its folder is created.
            weights_only: store only the module (hparams, input spec, weights).
        """
        if self.module is None:
            raise RuntimeError("Trainer.save_checkpoint needs a module: call fit (or validate, test, "
                               "predict) first.")
        with self.profiler.profile("checkpoint save"):
            tree = build_checkpoint(self, weights_only=weights_only)  # on every worker: reads sync
            if self.is_global_zero:
                write_checkpoint(path, tree)
            else:  # MultiWorkerMirrored protocol: the others write to a temporary place, removed
                scratch = tempfile.mkdtemp(prefix="kt-worker-ckpt-")
                try:
                    write_checkpoint(os.path.join(scratch, os.path.basename(path)), tree)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)

    # ------------------------------------------------------------------ the loops
    def _fit(self, train, val, checkpoint):
        module, bus, logs, profile = self.module, self._bus, self._logs, self.profiler.profile
        self._prepare_module(train, step="training_step")
        n_train = self.num_training_batches = limit_batches(
            self.overfit_batches or self.limit_train_batches, train, "limit_train_batches")
        n_val = self.num_val_batches = (
            limit_batches(self.overfit_batches or self.limit_val_batches, val, "limit_val_batches")
            if val is not None else 0)
        self._compiled.tuner = StepTuner(
            steps_per_execution=self.steps_per_execution, jit_compile=self.jit_compile,
            planned_steps=planned_batches(n_train, self.max_epochs, self.max_steps,
                                          self.accumulate_grad_batches),
            fixed_rule=(self.deterministic or self.detect_anomaly or self.run_eagerly
                        or self._num_workers > 1),  # timing differs between workers
            replicas=self._replicas)
        if self._replicas > 1 and self.jit_compile is True:
            warnings.warn(f"jit_compile=True is ignored under a strategy of {self._replicas} "
                          "replicas: the distributed step runs without XLA. Pass jit_compile=False "
                          "(or 'auto') to silence this.", stacklevel=3)
        self._per_batch, self._chunk_intervals = chunk_plan(
            self.callbacks, module, self.loggers or self._num_workers > 1, self.log_every_n_steps)
        if self._num_workers > 1 and train.seed is not None:  # the chief's shuffle seed for all
            local_replicas = self.strategy.num_replicas_in_sync // self._num_workers
            train.seed = self._agreement.sum(
                [train.seed if self.is_global_zero else 0])[0] // local_replicas
        if self._lr_scheduler is not None and self._lr_scheduler["interval"] == "step":
            self._chunk_intervals.append(self._lr_scheduler["frequency"])  # steps it acts on
        # Every fit is a new run (a new optimizer was just configured); ckpt_path continues one.
        self.current_epoch, self.global_step, self.should_stop = 0, 0, False
        self._batches_done, self._epoch_done, self._validated_at = 0, False, None
        self.history = {}
        if checkpoint is not None:
            restore_training_state(self, checkpoint, self._ckpt_file)
        for logger in self.loggers:
            if checkpoint is not None:
                logger.resume(self.global_step)
            datamodule_hparams = self._datamodule.hparams if self._datamodule is not None else {}
            logger.log_hyperparams({**datamodule_hparams, **module.hparams})
            if getattr(logger, "log_graph", False):
                logger.log_model_graph(module, module._kt_input_spec)
        resume_at = 0 if self._epoch_done else self._batches_done
        first_epoch = self.current_epoch + (1 if self._epoch_done else 0)
        val_every = val_interval(self.val_check_interval, n_train) if n_val != 0 else None
        # Arrays are sliced in memory by the compiled loop. Other data: one iterator for the whole
        # fit over a repeated dataset (deleting a tf.data iterator at every epoch end stalls until an
        # autotune timer fires); resuming skips to the saved position.
        if n_train is not None:
            train_feed = self._feed(train, n_train, repeat=True,
                                    skip=first_epoch * n_train + resume_at)
        val_feed = self._feed(val, n_val, repeat=True) if n_val else None

        bus.call("on_fit_start")
        if n_val != 0 and self.num_sanity_val_steps != 0 and checkpoint is None:
            sanity = self.num_sanity_val_steps if self.num_sanity_val_steps > 0 else n_val
            sanity = min(sanity, n_val) if n_val is not None else sanity
            self.sanity_checking = True
            bus.call("on_sanity_check_start")
            in_memory = val_feed is not None and val_feed.in_memory  # None: unknown length
            self._eval_loop("val", val_feed if in_memory else self._feed(val, sanity),
                            sanity, exact=n_val is not None)
            bus.call("on_sanity_check_end")
            self.sanity_checking = False
            logs.clear("val")
        bus.call("on_train_start")
        self._start_time = time.monotonic()
        epochs = range(first_epoch, epoch_limit(self.max_epochs)) if n_train != 0 else ()
        with SignalCatcher() as signals:
            for epoch in epochs:
                self.current_epoch, self._epoch_done = epoch, False
                validate_now = n_val != 0 and (epoch + 1) % self.check_val_every_n_epoch == 0
                batch_idx, validated_at = resume_at, self._validated_at
                self._batches_done = batch_idx
                if resume_at == 0:
                    validated_at = self._validated_at = None
                    logs.reset("train")
                    bus.call("on_train_epoch_start")
                elif validate_now and val_every and batch_idx % val_every == 0 and \
                        validated_at != batch_idx:  # saved at a validation point, before it ran
                    self._validation_run(val, val_feed, n_val)
                    validated_at = self._validated_at = batch_idx
                resume_at = 0
                self._compiled.check_trainable()  # a callback may have (un)frozen layers
                if self._compiled.accumulating:  # a scheduler may have changed it this epoch
                    self._compiled.accumulate.assign(self.accumulate_grad_batches)
                every = self.accumulate_grad_batches if self._compiled.accumulating else 1
                if n_train is None:
                    train_feed = IteratorFeed(iter(self._distribute(train.dataset(
                        limit=self._int_limit(self.limit_train_batches), skip=batch_idx))))
                train_feed.start_epoch(epoch)
                while n_train is None or batch_idx < n_train:
                    chunk = self._chunk(batch_idx, n_train, val_every if validate_now else None,
                                        every)
                    bus.call("on_train_batch_start", batch_idx)
                    with profile("train: compiled call"):
                        ran, outputs = self._compiled.run("train", train_feed, chunk, batch_idx)
                    ran = chunk if n_train is not None else int(ran)  # unknown length: read count
                    batch_idx += ran
                    steps = batch_idx // every - (batch_idx - ran) // every  # optimizer steps
                    self.global_step += steps
                    self._batches_done = batch_idx
                    logs.mark_dirty("train")
                    if ran == 0:
                        break
                    log_now = (self.global_step // self.log_every_n_steps
                               > (self.global_step - steps) // self.log_every_n_steps)
                    if log_now and logs.synced_reads:
                        logs.sync()  # every worker reads here, at the same step
                    bus.call("on_train_batch_end", outputs, batch_idx - 1)
                    if self.loggers and log_now:
                        self._log_row(logs.results("train"))  # the loggers' own interval
                    if self.profiler.traces_steps:
                        self.profiler.after_train_call(self)
                    if self._lr_scheduler is not None:
                        step_scheduler(self._lr_scheduler, self, module.optimizer, "step",
                                       self.global_step)
                    if validate_now and val_every and batch_idx % val_every == 0:
                        self._validation_run(val, val_feed, n_val)
                        validated_at = self._validated_at = batch_idx
                    received, stop = self._agree(signals.received, self._stop_requested(epoch))
                    if received:
                        self._stop_on_signal(received)
                    if stop or ran < chunk:
                        break
                if n_train is None and batch_idx == 0:
                    warnings.warn("train_data ran out of data: an epoch got no batches. Training "
                                  "stops; pass a generator function (called every epoch) or a "
                                  "repeatable dataset.")
                    self.should_stop = True
                if every > 1 and batch_idx % every:  # the epoch's leftover batches: one more step
                    self._compiled.flush()
                    self.global_step += 1
                if validate_now and val_every is None and validated_at != batch_idx:
                    self._validation_run(val, val_feed, n_val)
                self._epoch_done = True
                if logs.synced_reads:
                    logs.sync()
                bus.call("on_train_epoch_end")
                if self._lr_scheduler is not None:
                    step_scheduler(self._lr_scheduler, self, module.optimizer, "epoch", epoch + 1)
                self._end_epoch_logging()
                if self.should_stop and epoch + 1 < self.min_epochs:
                    self.should_stop = False  # min_epochs wins over early stopping
                received, stop = self._agree(signals.received, self._stop_requested(epoch))
                if received:
                    self._stop_on_signal(received)
                if stop:
                    break
        bus.call("on_train_end")
        bus.call("on_fit_end")

    def _stop_on_signal(self, signum):
        """Saves ``last.ckpt`` and leaves through SystemExit (on_exception and teardown still run)."""
        path = os.path.join(checkpoint_dirs(self.callbacks, self.default_root_dir)[0], "last.ckpt")
        self.save_checkpoint(path)
        raise SystemExit(EXIT_CODES[signum])

    def _validation_run(self, val, val_feed, n_val):
        if val_feed is None:  # unknown length: a fresh pass each time
            val_feed = IteratorFeed(iter(self._distribute(
                val.dataset(limit=self._int_limit(self.limit_val_batches)))))
        with self.profiler.profile("validation run"):
            self._eval_loop("val", val_feed, n_val, exact=n_val is not None)

    def _feed(self, source, n, *, repeat=False, skip=0):
        """Array data in memory (its position is the batch index, so ``skip`` is not needed), anything
        else through one ``tf.data`` iterator."""
        if n is not None and source.in_memory:
            feed = ArrayFeed(source, to_gpu=self._replicas == 1)
            feed.start_epoch(0)
            return feed
        return IteratorFeed(iter(self._distribute(source.dataset(limit=n, repeat=repeat, skip=skip))))

    @property
    def _replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def _distribute(self, dataset):
        """Splits every global batch over the replicas (and workers)."""
        if self._replicas == 1:
            return dataset
        if self._num_workers > 1:  # each worker takes its part of every global batch
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = \
                tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
        return self.strategy.experimental_distribute_dataset(dataset)

    def _log_row(self, metrics, epoch=None):
        hidden = self._logs.hidden_keys
        row = {k: v for k, v in metrics.items() if k not in hidden and isinstance(v, float)}
        if epoch is not None:
            row = {"epoch": epoch, **row}
        with self.profiler.profile("logger write"):
            for logger in self.loggers:
                logger.log_metrics(row, self.global_step)

    def _end_epoch_logging(self):
        """Epoch row for the loggers, ``trainer.history`` (Keras's History), histograms."""
        metrics = {k: v for k, v in self.logged_metrics.items() if isinstance(v, float)}
        epochs_before = len(self.history.get("epoch", []))
        for key in metrics.keys() | self.history.keys() - {"epoch"}:
            self.history.setdefault(key, [None] * epochs_before).append(metrics.get(key))
        self.history.setdefault("epoch", []).append(self.current_epoch)
        if not self.loggers:
            return
        self._log_row(metrics, epoch=self.current_epoch)
        with self.profiler.profile("logger write"):
            for logger in self.loggers:
                histogram_freq = getattr(logger, "histogram_freq", 0)
                if histogram_freq and (self.current_epoch + 1) % histogram_freq == 0:
                    logger.log_weights(self.module, self.current_epoch)
                logger.save()

    def _eval_loop(self, stage, feed, n, *, exact):
        bus, hook = self._bus, _HOOK_PREFIX[stage]
        self._logs.reset(stage)
        bus.call(f"on_{hook}_start")
        bus.call(f"on_{hook}_epoch_start")
        batch_idx = 0
        size = self._eval_chunk()
        while n is None or batch_idx < n:
            chunk = size if n is None else min(size, n - batch_idx)
            bus.call(f"on_{hook}_batch_start", batch_idx)
            ran, outputs = self._compiled.run(stage, feed, chunk, batch_idx)
            ran = chunk if exact else int(ran)
            batch_idx += ran
            self._logs.mark_dirty(stage)
            if ran == 0:
                break
            bus.call(f"on_{hook}_batch_end", outputs, batch_idx - 1)
            if ran < chunk:
                break
        if self._logs.synced_reads:
            self._logs.sync()
        bus.call(f"on_{hook}_epoch_end")
        bus.call(f"on_{hook}_end")

    def _evaluate(self, stage, module, data, datamodule, ckpt_path, batch_size):
        entry = "validate" if stage == "val" else "test"
        module = self._module_or_fitted(module, entry)
        method = "val_dataset" if stage == "val" else "test_dataset"
        if data is None and datamodule is None and self._fit_data and self._fit_data[0] is not None:
            datamodule, batch_size = self._fit_data  # Lightning: reuse the fit's DataModule
        source = resolve_data(entry, data, datamodule, method, "data", batch_size=batch_size,
                              shuffle=False)
        self._require(source, entry, method)
        short = "val" if stage == "val" else "test"

        def body():
            self._prepare_module(source, step="validation_step" if stage == "val" else "test_step")
            self._load_weights(ckpt_path)
            n = limit_batches(getattr(self, f"limit_{short}_batches"), source,
                              f"limit_{short}_batches")
            setattr(self, f"num_{short}_batches", n)
            self._per_batch, self._chunk_intervals = chunk_plan(
                self.callbacks, self.module, self.loggers, self.log_every_n_steps)
            self._eval_loop(stage, self._feed(source, n), n, exact=n is not None)
            results = self._logs.results(stage) | self._logs.hook_values
            self._log_row(results)
            return results

        return self._run(entry, module, datamodule, body)

    def _predict(self, source, ckpt_path):
        bus = self._bus
        self._prepare_module(source, step="predict_step")
        self._load_weights(ckpt_path)
        n = self.num_predict_batches = limit_batches(self.limit_predict_batches, source,
                                                     "limit_predict_batches")
        iterator = iter(source.dataset(limit=n))
        predict_fn = self._compiled.predict_function()
        outputs = []
        bus.call("on_predict_start")
        bus.call("on_predict_epoch_start")
        for batch_idx in itertools.count() if n is None else range(n):
            bus.call("on_predict_batch_start", batch_idx)
            try:
                prediction = predict_fn(iterator, tf.constant(batch_idx, tf.int64))
            except (tf.errors.OutOfRangeError, StopIteration):
                break
            outputs.append(prediction)
            bus.call("on_predict_batch_end", prediction, batch_idx)
        bus.call("on_predict_epoch_end")
        bus.call("on_predict_end")
        if not outputs:
            return None
        return tf.nest.map_structure(lambda *parts: np.concatenate([np.asarray(p) for p in parts]),
                                     *outputs)

    # ------------------------------------------------------------------ checkpoints
    def _read_checkpoint(self, ckpt_path):
        self._ckpt_file = resolve_ckpt_path(ckpt_path, self.callbacks, self.default_root_dir,
                                            self.loggers)
        return read_checkpoint(self._ckpt_file) if self._ckpt_file is not None else None

    def _load_weights(self, ckpt_path):
        checkpoint = self._read_checkpoint(ckpt_path)
        if checkpoint is not None:
            restore_weights(self.module, checkpoint, self._ckpt_file)

    # ------------------------------------------------------------------ helpers
    def _run(self, stage, module, datamodule, body):
        """Attaches the module, calls setup, runs ``body``; on any exception calls on_exception."""
        self._attach(module)
        self.stage = stage
        try:
            with self.profiler.profile(stage), precision_scope(self.precision, module):
                self._bus.call("setup", stage)
                result = body()
        except BaseException as error:
            self._bus.on_exception(error)
            self._teardown(stage, datamodule, error)
            interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
            self._finish(stage, "interrupted" if interrupted else "failed")
            raise
        self._teardown(stage, datamodule, None)
        self._finish(stage, "success")
        return result

    def _finish(self, stage, status):
        if stage == "fit":
            if getattr(self.profiler, "stop", None):
                self.profiler.stop()
            self.profiler.describe(self)
        for logger in self.loggers:
            logger.finalize(status)

    def _teardown(self, stage, datamodule, error):
        try:
            self._bus.call("teardown", stage)
            if datamodule is not None:
                datamodule.teardown(stage)
        except Exception as nested:
            if error is None:
                raise
            if hasattr(error, "add_note"):
                error.add_note(f"teardown also failed: {nested!r}")
        finally:
            self.stage = None

    def _attach(self, module):
        if not isinstance(module, TrainModule):
            raise TypeError(
                "Trainer needs a kerastrainer.TrainModule (a keras.Model subclass with call, loss and "
                f"configure_optimizer). Received: {type(module).__name__}"
            )
        if module is not self.module:
            self.module = module
            self._logs = self._new_log_collector()
            self._compiled = None
        module.trainer = self
        self._bus = CallbackBus(callbacks=self.callbacks, module=module, trainer=self,
                                profiler=self.profiler)

    def _new_log_collector(self):
        return LogCollector(strategy=self.strategy, agreement=self._agreement)

    def _agree(self, received, stop):
        """Makes every worker take the same stop decision at the same step; returns
        ``(signal to stop on or None, stop)``."""
        if self._agreement is None:
            return received, stop
        term, interrupt, stop, should = self._agreement.sum(
            [received == signal.SIGTERM, received == signal.SIGINT, stop, self.should_stop])
        self.should_stop = bool(should)
        received = signal.SIGTERM if term else signal.SIGINT if interrupt else None
        return received, bool(stop)

    def _prepare_module(self, source, *, step):
        self._lr_scheduler = prepare_module(
            self.module, self._logs, source, step=step, strategy=self.strategy,
            clip_val=self.gradient_clip_val, clip_algorithm=self.gradient_clip_algorithm,
            loss_scaling=self.precision == "mixed_float16")
        if step == "training_step" or self._compiled is None:  # a new optimizer: compile afresh
            self._compiled = CompiledSteps(module=self.module, logs=self._logs, bus=self._bus,
                                           jit_compile=self.jit_compile, run_eagerly=self.run_eagerly,
                                           accumulate=self.accumulate_grad_batches,
                                           detect_anomaly=self.detect_anomaly,
                                           strategy=self.strategy)
        self._compiled.bus = self._bus

    def _chunk(self, batch_idx, n_train, val_every, every):
        size = self.steps_per_execution
        if size == "auto":  # several workers: chunks end at the intervals only, the same everywhere
            size = 1 if self._per_batch else (
                self._compiled.tuner.chunk if self._num_workers == 1 else MAX_CHUNK)
            for interval in self._chunk_intervals:  # end where a logger or callback looks
                size = min(size, (interval - self.global_step % interval) * every - batch_idx % every)
        if n_train is not None:
            size = min(size, n_train - batch_idx)
        if val_every:
            size = min(size, val_every - batch_idx % val_every)
        if self.max_steps >= 0:  # batches left before max_steps optimizer steps
            size = min(size, (self.max_steps - self.global_step) * every - batch_idx % every)
        return max(size, 1)

    def _eval_chunk(self):
        if self.steps_per_execution != "auto":
            return self.steps_per_execution
        if self._per_batch:
            return 1
        tuner = self._compiled.tuner
        return tuner.chunk if tuner.seconds_per_step is not None and self._num_workers == 1 else 32

    def _stop_requested(self, epoch) -> bool:
        if 0 <= self.max_steps <= self.global_step:
            return True
        if self.max_time is not None and time.monotonic() - self._start_time >= self.max_time:
            self.should_stop = True
            return True
        return self.should_stop and epoch + 1 >= self.min_epochs

    @staticmethod
    def _int_limit(flag):
        return flag if isinstance(flag, int) else None

    def _module_or_fitted(self, module, entry):
        if module is None:
            if self.module is None:
                raise ValueError(
                    f"Trainer.{entry} needs a module: pass one, or call trainer.fit(module, ...) first.")
            return self.module
        return module

    @staticmethod
    def _require(source, entry, method):
        if source is None:
            raise ValueError(
                f"Trainer.{entry} needs data. Pass data=... or a datamodule with {method}(). "
                "Received: data=None")
