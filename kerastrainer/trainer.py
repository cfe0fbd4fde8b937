"""The Trainer: fit / validate / test / predict as plain nested loops with every hook inline.

``docs/architecture.md`` follows one batch through it and says who owns which state.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import signal
import sys
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from kerastrainer import checkpoint as ckpt
from kerastrainer.autotune import StepTuner, varying_shapes
from kerastrainer.building import check_stage_inputs, ensure_built
from kerastrainer.callbacks.bus import CallbackBus
from kerastrainer.callbacks.defaults import configure_callbacks, with_module_callbacks
from kerastrainer.callbacks.finders import finders
from kerastrainer.callbacks.monitor import monitored_value
from kerastrainer.checkpoint_writer import CheckpointWriter
from kerastrainer.data.datamodule import DataModule
from kerastrainer.data.feeds import concatenate, eval_loaders, loader_stages
from kerastrainer.data.resolve import eval_sources, fit_sources
from kerastrainer.distributed import strategies
from kerastrainer.distributed.workers import mark_ready
from kerastrainer.fit_loop import FitLoop, limit_batches, needs_every_batch, planned_steps, step_intervals
from kerastrainer.flags import TrainerFlags, check_names, check_positional
from kerastrainer.foreign_names import EVAL_NAMES, FIT_NAMES, refuse_unknown
from kerastrainer.label_checks import label_problem
from kerastrainer.loggers import dispatch
from kerastrainer.module import TrainModule, can_run, check_module
from kerastrainer.op_errors import raise_surfaced
from kerastrainer.optimization import configure_optimization, step_counter
from kerastrainer.precision import precision_scope
from kerastrainer.profiler import make_profiler
from kerastrainer.loop_position import LoopPosition
from kerastrainer.results import Results
from kerastrainer.run_lock import RunLock
from kerastrainer.seed import GlobalRNG, make_deterministic
from kerastrainer.signals import EXIT_CODES
from kerastrainer.stages import EVALUATED, PREDICT, TEST, TRAIN, VAL
from kerastrainer.steps import CompiledSteps
from kerastrainer.trainer_views import TrainerViews
from kerastrainer.tuner import Tuner
from kerastrainer.weight_health import first_nonfinite, nonfinite_message


# the keyword arguments of fit and of validate/test/predict (a typo is matched against them)
FIT_ARGUMENTS = ("module", "train_data", "val_data", "datamodule", "ckpt_path", "batch_size",
                 "validation_split", "class_weight", "shuffle")
EVAL_ARGUMENTS = ("module", "data", "datamodule", "ckpt_path", "batch_size")


class Trainer(TrainerViews):
    """Runs a [`TrainModule`][kerastrainer.TrainModule]: the epoch/batch loop, compiled steps, metrics,
    callbacks and progress.

    Its keyword-only arguments are the flags of [`TrainerFlags`][kerastrainer.flags.TrainerFlags],
    kept as the frozen value ``trainer.flags`` and readable as attributes (``trainer.max_epochs``);
    ``docs/trainer.md`` tabulates them with their defaults. The objects a run uses are attributes of
    their own: ``strategy`` (a ``tf.distribute.Strategy``), ``callbacks``, ``loggers`` and ``logger``
    (the first), ``profiler``, and ``accumulate_grad_batches``, the batches per optimizer step now
    (the flag's value when a run starts; a ``GradientAccumulationScheduler`` changes it).

    Args:
        **flags: the flags (see [`TrainerFlags`][kerastrainer.flags.TrainerFlags]).

    Raises:
        TypeError, ValueError: an unknown flag, or a flag of the wrong type or range; the message
            names it.

    Examples:
        >>> trainer = Trainer(max_epochs=3, enable_progress_bar=False)  # doctest: +SKIP
        >>> trainer.fit(module, train_data=(x, y), val_data=(x_val, y_val))  # doctest: +SKIP
    """

    #: What ``inspect.signature(Trainer)`` (``help``, IDEs) shows: the flags, not ``**flags``.
    __signature__ = inspect.signature(TrainerFlags)

    _datamodule: DataModule | None  # the fit's, which validate and test reuse (as in Lightning)
    _fit_batch_size: int | None
    _bus: Any  # the run's CallbackBus (None until a run starts)

    def __init__(self, *args: Any, **flags: Any) -> None:
        check_positional(args)
        check_names(flags)
        self.flags = TrainerFlags(**flags)  # checked, then frozen
        self.strategy = strategies.make_strategy(self.flags.strategy)
        topology = strategies.topology(self.strategy)
        self.world_size = topology[0]
        self.num_workers = topology[1]
        self.global_rank = topology[2]
        self.is_global_zero = self.global_rank == 0  # the chief, which prints and writes files
        self._agreement = strategies.Agreement(self.strategy)  # the workers' common decisions
        mark_ready()  # tells `kerastrainer launch` this worker is up (no-op otherwise)
        writes_logs = self.flags.logger if not self.flags.fast_dev_run and self.is_global_zero else False
        self.loggers = dispatch.configure_loggers(writes_logs, str(self.flags.default_root_dir))  # the chief's
        self.logger = self.loggers[0] if self.loggers else None
        self.profiler = make_profiler(self.flags.profiler)
        self.checkpoint_writer = CheckpointWriter(background=self.flags.async_checkpointing)
        self.callbacks = configure_callbacks(
            self.flags.callbacks, chief=self.is_global_zero, progress_bar=self.flags.enable_progress_bar,
            model_summary=self.flags.enable_model_summary and not self.flags.fast_dev_run,
            checkpointing=self.flags.enable_checkpointing and not self.flags.fast_dev_run)
        if self.flags.deterministic:
            make_deterministic()
        self.accumulate_grad_batches = self.flags.accumulate_grad_batches
        self.position = LoopPosition()
        self.results = self._new_results()
        self.should_stop = False
        self.sanity_checking = False
        self.stage = None  # the Stage of the run going on (TRAIN in a fit, its validations too)
        self.module = None
        self.step_tuner = None
        self.dataloader_idx = None  # the dataset an evaluation is on, of several
        self._batch_counts: dict[str, Any] = {}  # each stage's, by name, as its last run counted them
        self._steps = None  # the compiled steps
        self._bus = None
        self._lr_scheduler = None
        self._datamodule = None  # the fit's (see _evaluate)
        self._fit_batch_size = None
        self._train_source = None
        self._run_locks: list[RunLock] = []  # the fit's, released when it ends

    def fit(self, module: TrainModule, train_data: Any = None, val_data: Any = None, *,
            datamodule: DataModule | None = None, ckpt_path: str | os.PathLike | None = None,
            batch_size: int | None = None, validation_split: float | None = None,
            class_weight: dict[int, float] | None = None, shuffle: bool = True, **unknown: Any) -> None:
        """Trains ``module``, validating as the flags say.

        Args:
            module: a [`TrainModule`][kerastrainer.TrainModule].
            train_data: a batched ``tf.data.Dataset``, arrays, a ``PyDataset`` or a generator.
            val_data: validation data, same forms; a list of datasets validates on each (their
                values are ``val_loss/dataloader_idx_0``, ...).
            datamodule: a [`DataModule`][kerastrainer.DataModule] instead of the two above.
            ckpt_path: resume exactly from a checkpoint: a path, ``"last"`` or ``"best"``.
            batch_size: the batch size of array data (default 32).
            validation_split: validate on this last fraction of the rows of array ``train_data``.
            class_weight: ``{class: weight}``: weigh each training example by its class (Keras's).
            shuffle: reshuffle array training data every epoch.

        Raises:
            ValueError, TypeError: bad data, module or checkpoint (the message names it); a
                keyword ``fit`` does not take (Keras's ``validation_data=``, Lightning's
                ``train_dataloaders=`` are named with the argument to use).
            FileNotFoundError: ``ckpt_path`` names no file.
            SystemExit: after a graceful SIGTERM/SIGINT stop (``last.ckpt`` was saved first).
        """
        refuse_unknown("Trainer.fit()", unknown, FIT_ARGUMENTS, FIT_NAMES)
        data = {"train_data": train_data, "datamodule": datamodule, "batch_size": batch_size}
        for finder in finders(self.callbacks) if ckpt_path is None else []:  # a resumed run keeps its own
            finder.tune(Tuner(self), module, data)  # before the data is batched: it may re-batch it
        train, vals = fit_sources(train_data, val_data, datamodule, batch_size=data["batch_size"], shuffle=shuffle,
                                  overfit=bool(self.flags.overfit_batches), validates=can_run(module, VAL),
                                  validation_split=validation_split, class_weight=class_weight)
        self._datamodule = datamodule
        self._fit_batch_size = data["batch_size"]
        self._train_source = train
        checkpoint = ckpt.find_checkpoint(ckpt_path, self.callbacks, self.flags.default_root_dir, self.loggers)
        if checkpoint is not None:  # before any folder is used: resume in the same run
            ckpt.load_states(checkpoint[0], {"loggers": self.loggers})
        return self._run(TRAIN, module, datamodule, lambda: self._fit(train, vals, checkpoint))

    def validate(self, module: TrainModule | None = None, data: Any = None, *,
                 datamodule: DataModule | None = None, ckpt_path: str | os.PathLike | None = None,
                 batch_size: int | None = None, **unknown: Any) -> dict[str, float]:
        """One validation pass (default: the fitted module and DataModule); returns its metrics.

        Raises:
            TypeError: a keyword it does not take (Keras's ``x=``, Lightning's ``dataloaders=``
                are named with the argument to use).
        """
        refuse_unknown("Trainer.validate()", unknown, EVAL_ARGUMENTS, EVAL_NAMES)
        return self._evaluate(VAL, module, data, datamodule, ckpt_path, batch_size)

    def test(self, module: TrainModule | None = None, data: Any = None, *,
             datamodule: DataModule | None = None, ckpt_path: str | os.PathLike | None = None,
             batch_size: int | None = None, **unknown: Any) -> dict[str, float]:
        """Runs one test pass; returns its metrics (``test_loss``, ``test_acc``, ...).

        Raises:
            TypeError: a keyword it does not take (named with the argument to use).
        """
        refuse_unknown("Trainer.test()", unknown, EVAL_ARGUMENTS, EVAL_NAMES)
        return self._evaluate(TEST, module, data, datamodule, ckpt_path, batch_size)

    def predict(self, module: TrainModule | None = None, data: Any = None, *,
                datamodule: DataModule | None = None, ckpt_path: str | os.PathLike | None = None,
                batch_size: int | None = None, return_predictions: bool = True, **unknown: Any) -> Any:
        """Returns the predictions for ``data`` as NumPy array(s), batches concatenated; ``None`` with
        ``return_predictions=False``, which keeps none in memory (a ``PredictionWriter`` writes them).

        Raises:
            TypeError: a keyword it does not take (named with the argument to use).
        """
        refuse_unknown("Trainer.predict()", unknown, (*EVAL_ARGUMENTS, "return_predictions"), EVAL_NAMES)
        return self._evaluate(PREDICT, module, data, datamodule, ckpt_path, batch_size, return_predictions)

    def save_checkpoint(self, path: str | os.PathLike, *, weights_only: bool = False) -> None:
        """Writes the run's state to ``path`` (HDF5, atomically; during a fit on a background thread,
        see ``async_checkpointing``); with ``weights_only``, only the module (hparams, input spec, weights).

        Raises:
            RuntimeError: no module was run yet.
        """
        with self.profiler.profile("checkpoint save"):
            tree = ckpt.build_checkpoint(  # on every worker: some reads are collectives
                self.module, owners={**self._state_owners(), "loggers": self.loggers},
                weights_only=weights_only, datamodule=self._datamodule)
            if not weights_only:
                self._bus.call("on_save_checkpoint", tree)
            self.checkpoint_writer.write(ckpt.save_checkpoint_file, path, tree, self.is_global_zero)
        if self.stage != TRAIN:  # outside a fit, the file is in place on return
            self.checkpoint_writer.wait()

    @property
    def train_dataset(self) -> Any:
        """The fit's training batches as a ``tf.data.Dataset`` (one epoch of them; ``None``
        before a fit). For callbacks that need a pass over the data, as
        ``StochasticWeightAveraging`` does for BatchNormalization statistics."""
        source = self._train_source
        return None if source is None else source.dataset(limit=self.num_training_batches)

    @property
    def num_training_batches(self) -> int | None:
        """Training batches per epoch (after ``limit_train_batches``); ``None``: unknown length."""
        return self._batch_counts.get(TRAIN.name)

    @property
    def num_val_batches(self) -> int | list | None:
        """Batches per validation run, a list with several datasets (``0``: no validation)."""
        return self._batch_counts.get(VAL.name)

    @property
    def num_test_batches(self) -> int | list | None:
        """Batches of the last test run, a list with several datasets."""
        return self._batch_counts.get(TEST.name)

    @property
    def num_predict_batches(self) -> int | None:
        """Batches of the last prediction run."""
        return self._batch_counts.get(PREDICT.name)

    @property
    def estimated_stepping_batches(self) -> int | float:
        """The optimizer steps the fit will take, for schedules over the whole run (OneCycle-style):
        ``max_steps`` when set, else ``max_epochs`` times the steps per epoch (batches over
        ``accumulate_grad_batches``, a partial accumulation counting as one); ``inf`` when the
        data has unknown length and no ``max_steps`` bounds it. Known from the start of ``fit``,
        so ``configure_optimizer`` can read it (``self.trainer.estimated_stepping_batches``).

        Example:
            >>> trainer = kt.Trainer(max_epochs=3)  # doctest: +SKIP
            >>> trainer.fit(module, train_data=(x, y), batch_size=32)  # 10 batches  # doctest: +SKIP
            >>> trainer.estimated_stepping_batches  # doctest: +SKIP
            30
        """
        return planned_steps(self.num_training_batches, max_epochs=self.flags.max_epochs or 0,
                             max_steps=self.flags.max_steps, accumulate=self.accumulate_grad_batches)

    @property
    def trace_counts(self) -> dict[str, int]:
        """How often each compiled step was traced (``{'train': 1}`` is ideal)."""
        return dict(self._steps.trace_counts) if self._steps else {}

    # ------------------------------------------------------------------ the loops
    def _fit(self, train, vals, checkpoint):
        bus = self._bus
        module = self.module
        self._lock_run_folders()  # before anything is written there
        n_train = self._count_batches(TRAIN, [train], self.flags.overfit_batches or self.flags.limit_train_batches)[0]
        n_vals = self._count_batches(VAL, vals, self.flags.overfit_batches or self.flags.limit_val_batches)
        self._prepare(TRAIN, train, EVALUATED + tuple(loader_stages(VAL, len(vals))))
        for source, stage in zip(vals, loader_stages(VAL, len(vals))):
            check_stage_inputs(module, stage, source.element_spec, base=TrainModule)
        self.step_tuner = self._make_step_tuner(fit=True, num_batches=n_train, data=train)  # may measure
        self.position = LoopPosition()  # a new run; ckpt_path continues one
        loop = self._make_loop(num_batches=n_train, num_val_batches=n_vals)
        train.seed = self._agreement.from_chief(train.seed)
        train.keep_iterator_state = self.flags.save_input_state
        self.should_stop = False
        if checkpoint is not None:
            ckpt.restore_training_state(module, *checkpoint, owners=self._state_owners())
            bus.call("on_load_checkpoint", checkpoint[0])
        self.position.watch_optimizer(step_counter(module))
        dispatch.start_fit(self.loggers, module, self._datamodule,
                           resumed_at=self.global_step if checkpoint is not None else None)
        feeds = loop.open_feeds(train, vals, strategy=self.strategy, num_workers=self.num_workers)
        bus.call("on_fit_start")
        if loop.num_val_batches != 0 and self.flags.num_sanity_val_steps != 0 and checkpoint is None:
            self._sanity_check(feeds)
        bus.call("on_train_start")
        loop.start()  # the max_time clock
        self.profiler.start(log_dir=self.log_dir)
        with loop.catching_signals():  # until the last checkpoint is on disk
            for epoch in loop.epochs():
                self._train_epoch(epoch, loop)
                if self._stop(loop, epoch):
                    break
            bus.call("on_train_end")
            bus.call("on_fit_end")
            self.checkpoint_writer.wait()  # a background write still going: a signal now waits for it
        if loop.signal_received:  # after training ended: its checkpoints are written, exit as asked
            self._say_interrupted(loop.signal_received, "training had ended and its checkpoints are written")
            raise SystemExit(EXIT_CODES[loop.signal_received])

    def _train_epoch(self, epoch, loop):
        bus = self._bus
        if not loop.begin_epoch(epoch):
            self.results.start_epoch(validates=loop.validating)  # no stale val_* values
            bus.call("on_train_epoch_start")
        elif loop.validation_pending():
            self._validate(loop, row=True)  # the checkpoint was saved at a validation point
        self._steps.refresh_trainable()  # a callback may have (un)frozen layers
        loop.batches_per_step = self._steps.set_accumulation(self.accumulate_grad_batches)
        feed = loop.training_feed(epoch)
        for chunk in loop.chunks(self.step_tuner.train_chunk):
            if bus.call("on_train_batch_start", chunk.start) == -1:
                break  # the module ends the epoch here (Lightning's -1)
            with self.profiler.profile("train: compiled call"):
                ran, outputs = self.step_tuner.run(self._steps, TRAIN, feed, chunk.size, chunk.start)
            advance = loop.advance(chunk, ran)
            if advance.batches == 0:
                break
            log_now = loop.logs_after(advance)
            if log_now:
                self.results.sync()  # several workers read here, at the same step
            bus.call("on_train_batch_end", outputs, chunk.start + advance.batches - 1)
            if self.loggers and log_now:
                self._log_row(self.results.read(TRAIN) | self.results.take_fresh_hook_values())
            if advance.steps:
                self._after_optimizer_steps(advance.steps)
            if loop.validates_now():
                self._validate(loop, row=loop.more())  # mid-epoch: its own row
            if self._stop(loop, epoch) or advance.short:
                break
        self._end_train_epoch(epoch, loop)

    def _after_optimizer_steps(self, steps):
        """What acts on optimizer steps, not on compiled calls: the profiler's trace window and a
        step-wise LR scheduler."""
        global_step = self.position.global_step
        self.profiler.after_optimizer_steps(global_step)
        self._lr_scheduler.after_steps(self.module.optimizer, global_step, steps, self._monitored)

    def _end_train_epoch(self, epoch, loop):
        self.should_stop |= loop.ran_dry()
        if loop.leftover_step():  # the epoch's leftover accumulated batches: one more step
            self._steps.flush()
            self._after_optimizer_steps(1)
        self._check_labels(TRAIN)
        if loop.validates_at_epoch_end():
            self._validate(loop)
        if loop.skipped_validation():  # stopped before its validation: no stale val_* values
            self.results.drop_validation()
        loop.end_epoch()
        self.results.sync()
        self._bus.call("on_train_epoch_end")
        self._lr_scheduler.after_epoch(self.module.optimizer, epoch, self._monitored)
        self.position.check_optimizer(step_counter(self.module))
        metrics = {k: v for k, v in self.logged_metrics.items() if isinstance(v, float)}
        self._check_weights_finite(epoch, metrics.get("loss"))
        self.position.record_epoch(metrics)  # trainer.history
        with self.profiler.profile("logger write"):
            dispatch.log_row(self.loggers, metrics, self.global_step, epoch=epoch)
            dispatch.end_epoch(self.loggers, self.module, epoch)
        self.should_stop = self.should_stop and loop.may_stop(epoch)  # min_epochs wins over it

    def _check_weights_finite(self, epoch, loss):
        """Warns, once a run, when an epoch left non-finite trainable weights while its reported
        loss looks finite (`weight_health`); a NaN loss says so itself."""
        if "weights" in self._warned or (loss is not None and not math.isfinite(loss)):
            return
        path = first_nonfinite(self.module.trainable_variables)
        if path is not None:
            self._warned.add("weights")
            warnings.warn(nonfinite_message(path, epoch, loss), RuntimeWarning, stacklevel=2)

    def _check_labels(self, *stages):
        """Refuses out-of-range class labels that the steps counted; warns, once a run per stage,
        about fractional ones (`label_checks`)."""
        for stage in stages:
            problem = label_problem(self.results.recorder.take_counts(stage), stage.data_name)
            if problem is None:
                continue
            kind, message = problem
            if kind == "error":
                raise ValueError(message)
            if stage.name not in self._warned:
                self._warned.add(stage.name)
                warnings.warn(message, UserWarning, stacklevel=2)

    def _monitored(self):
        """The value a ``ReduceLROnPlateau`` scheduler watches (read only when it acts)."""
        return monitored_value(self.callback_metrics, self._lr_scheduler.monitor, "ReduceLROnPlateau",
                               validates=self.num_val_batches != 0)

    def _validate(self, loop, *, row=False):
        """A validation run in fit; ``row``: mid-epoch, its values logged at its step (Lightning)."""
        with self.profiler.profile("validation run"):
            self._eval_loop(VAL, loop.feeds.validation())
        loop.mark_validated()
        if row and self.loggers:
            self._log_row(self.results.read(*loop.feeds.val_stages))

    def _sanity_check(self, feeds):
        loaders = feeds.sanity(self.flags.num_sanity_val_steps)
        self.sanity_checking = True
        self._bus.call("on_sanity_check_start")
        self._eval_loop(VAL, loaders)
        self._bus.call("on_sanity_check_end")
        self.sanity_checking = False
        self.results.clear(*[loader.stage for loader in loaders])

    def _eval_loop(self, stage, loaders):
        """One validation or test run over each of its datasets' `Loader`s in turn (Lightning's order)."""
        bus = self._bus
        self.results.start_run(stage, [loader.stage for loader in loaders])
        bus.call(stage.hook_name("start"))
        bus.call(stage.hook_name("epoch_start"))
        for loader in loaders:
            self.dataloader_idx = loader.stage.dataloader_idx
            n = loader.num_batches
            batch_idx = 0
            size = self.step_tuner.eval_chunk()
            idx = {"dataloader_idx": self.dataloader_idx}
            while n is None or batch_idx < n:
                chunk = size if n is None else min(size, n - batch_idx)
                bus.call(stage.hook_name("batch_start"), batch_idx, **idx)
                ran, outputs = self.step_tuner.run(self._steps, loader.stage, loader.feed, chunk, batch_idx)
                ran = chunk if loader.exact else int(ran)
                batch_idx += ran
                if ran == 0:
                    break
                bus.call(stage.hook_name("batch_end"), outputs, batch_idx - 1, **idx)
                if ran < chunk:
                    break
        self.dataloader_idx = None
        self._check_labels(*[loader.stage for loader in loaders])
        self.results.sync()
        bus.call(stage.hook_name("epoch_end"))
        bus.call(stage.hook_name("end"))

    def _predict_loop(self, source, n, keep):
        bus = self._bus
        outputs = []
        iterator = iter(source.dataset(limit=n))
        predict_fn = self._steps.predict_function(jit=bool(self.step_tuner.jit))
        bus.call("on_predict_start")
        bus.call("on_predict_epoch_start")
        for batch_idx in itertools.count() if n is None else range(n):
            bus.call("on_predict_batch_start", batch_idx)
            try:
                prediction = predict_fn(iterator, tf.constant(np.int64(batch_idx)))  # not cached
            except (tf.errors.OutOfRangeError, StopIteration):
                break
            except Exception as error:  # noqa: BLE001 - re-raised, unwrapped where it is wrapped
                raise_surfaced(error)
                raise
            if keep:
                outputs.append(prediction)
            bus.call("on_predict_batch_end", prediction, batch_idx)
        bus.call("on_predict_epoch_end")
        bus.call("on_predict_end")
        return concatenate(outputs) if keep else None

    # ------------------------------------------------------------------ around the loops
    def _evaluate(self, stage, module, data, datamodule, ckpt_path, batch_size, keep=True):
        if module is None and self.module is None:
            raise ValueError(f"Trainer.{stage.entry} needs a module: pass one, or fit one first.")
        datamodule, sources = eval_sources(stage, data, datamodule, batch_size,  # default: the fit's
                                           fit=(self._datamodule, self._fit_batch_size))

        def body():
            stages = loader_stages(stage, len(sources))  # several datasets: values of each
            self._prepare(stage, sources[0], (VAL, TEST, *(stages if stage is not PREDICT else ())))
            checkpoint = ckpt.find_checkpoint(ckpt_path, self.callbacks, self.flags.default_root_dir,
                                              self.loggers, required=True)  # never untrained weights
            if checkpoint is not None:
                ckpt.restore_weights(self.module, *checkpoint)
            counts = self._count_batches(stage, sources)
            if stage is PREDICT:
                return self._predict_loop(sources[0], counts[0], keep)
            self._eval_loop(stage, eval_loaders(stage, sources, counts, strategy=self.strategy,
                                                num_workers=self.num_workers))
            results = self.results.read(*stages) | self.results.run_hook_values()  # this run's only
            self._log_row(results)
            return results

        return self._run(stage, module or self.module, datamodule, body)

    def _run(self, stage, module, datamodule, body):
        """Runs ``body`` between the setup and teardown hooks; the loggers learn how it ended."""
        self._attach(module)
        self.stage = stage
        failure = None
        try:
            with self.profiler.profile(stage.entry), precision_scope(self.flags.precision, module), \
                    self._bus.run(stage.entry, datamodule):
                return body()
        except BaseException as error:
            failure = error
            raise
        finally:  # clean-up that fails never hides the error on its way (a note on it instead)
            self.stage = None
            if stage is TRAIN:
                self.profiler.stop()
                dispatch.guarded(failure, "the profiler's report", self._describe_profile)
            try:
                dispatch.guarded(failure, "a checkpoint write", self.checkpoint_writer.close)  # before loggers upload
                dispatch.finalize(self.loggers, failure)
            finally:  # the last file is on disk: another fit may write the folders now
                for lock in self._run_locks:
                    lock.release()
                self._run_locks = []

    def _attach(self, module):
        check_module(module)
        if module is not self.module:
            self.module, self._steps = module, None
            self.results = self._new_results()
        module.trainer = self
        self._warned = set()  # what this run warned about once (non-finite weights, labels)
        self.accumulate_grad_batches = self.flags.accumulate_grad_batches  # a callback's setup may change it
        dispatch.claim_run_folders(self.loggers)  # as the run starts
        self.callbacks = with_module_callbacks(self.callbacks, module)  # its configure_callbacks()
        self._bus = CallbackBus(callbacks=self.callbacks, module=module, trainer=self, profiler=self.profiler)

    def _new_results(self):
        """The `Results` of a module's runs; its compiled reads come from the one compile site."""
        return Results(strategy=self.strategy, agreement=self._agreement,
                       compile_reader=None if self.flags.run_eagerly else CompiledSteps.compile_reader)

    def _prepare(self, stage, source, stages):
        """Builds the module, configures the metrics of ``stages`` once; training: a fresh optimizer."""
        module = self.module
        with self.strategy.scope():
            self.results.configure(stages, module.configure_metrics, module.configure_weighted_metrics)
            build = functools.partial(ensure_built, module, stage, source.element_spec,
                                      base=TrainModule, recorder=self.results.recorder,
                                      eager=self.flags.run_eagerly)
            if stage is TRAIN:  # built once the optimizer exists: a custom step may apply it
                module.optimizer, self._lr_scheduler = configure_optimization(
                    module, build=build, clip_val=self.flags.gradient_clip_val,
                    clip_algorithm=self.flags.gradient_clip_algorithm, loss_scaling=self.flags.precision == "mixed_float16")
            else:
                build()
        if stage is TRAIN or self._steps is None:
            self._steps = CompiledSteps(module=module, recorder=self.results.recorder, bus=self._bus,
                                        run_eagerly=self.flags.run_eagerly,
                                        accumulate=self.accumulate_grad_batches,
                                        detect_anomaly=self._detects_anomaly(), strategy=self.strategy)
        if stage is not TRAIN:  # a fit makes its own, which measures
            self.step_tuner = self._make_step_tuner(fit=False)

    def _detects_anomaly(self):
        """Whether the compiled step checks the loss and gradients are finite: the flag, or a
        callback that asks for it (`TerminateOnNaN`)."""
        return self.flags.detect_anomaly or any(c.checks_finite for c in self.callbacks)

    def _make_step_tuner(self, *, fit, num_batches=None, data=None):
        """The `StepTuner` of a run. Only a fit measures XLA (knowing its ``num_batches`` per
        epoch, it skips runs too short to repay a compile), and not when it is deterministic,
        checks anomalies, runs eagerly or spans several workers (whose timings differ). ``data``:
        the fit's training source, whose batch spec says whether shapes vary."""
        planned = None
        if fit:  # at most this many training batches: the planned optimizer steps' worth
            steps = planned_steps(num_batches, max_epochs=self.flags.max_epochs, max_steps=self.flags.max_steps,
                                  accumulate=self.accumulate_grad_batches)
            planned = None if steps == math.inf else steps * self.accumulate_grad_batches
        measure = fit and not (self.flags.deterministic or self._detects_anomaly() or self.flags.run_eagerly
                               or self.num_workers > 1)
        if fit and self.world_size > 1 and self.flags.jit_compile is True:
            warnings.warn(f"jit_compile=True is ignored under a strategy of {self.world_size} "
                          "replicas: the distributed step runs without XLA. Pass jit_compile=False "
                          "(or 'auto') to silence this.", stacklevel=5)
        return StepTuner(steps_per_execution=self.flags.steps_per_execution, jit_compile=self.flags.jit_compile,
                         planned_batches=planned, fixed_rule=not measure, world_size=self.world_size,
                         workers=self.num_workers,
                         every_batch=needs_every_batch(self.callbacks, self.module),
                         varying_shapes=data is not None and varying_shapes(data.element_spec),
                         unknown_length=fit and num_batches is None)

    def _make_loop(self, *, num_batches, num_val_batches):
        """The `FitLoop` of a fit, from its flags and position. With ``steps_per_execution="auto"``
        chunks also end at the loggers' interval (with several workers always: they read values
        together there), at every callback's ``step_interval`` and at a step-wise scheduler's
        frequency."""
        intervals = step_intervals(steps_per_execution=self.flags.steps_per_execution,
                                   log_every_n_steps=self.flags.log_every_n_steps,
                                   logs=bool(self.loggers) or self.num_workers > 1,
                                   callback_intervals=(c.step_interval(self) for c in self.callbacks),
                                   scheduler=self._lr_scheduler)
        return FitLoop(position=self.position, num_batches=num_batches, num_val_batches=num_val_batches,
                       val_check_interval=self.flags.val_check_interval,
                       check_val_every_n_epoch=self.flags.check_val_every_n_epoch,
                       max_epochs=self.flags.max_epochs, max_steps=self.flags.max_steps,
                       log_every_n_steps=self.flags.log_every_n_steps, min_epochs=self.flags.min_epochs,
                       max_time=self.flags.max_time, step_intervals=intervals)

    def _count_batches(self, stage, sources, flag=None):
        """Each source's batches after the stage's ``limit_*`` flag; also ``num_<stage>_batches``."""
        counts = limit_batches(stage.limit(self.flags) if flag is None else flag, sources,
                               flag_name=stage.limit_flag, data_name=stage.data_name)
        self._batch_counts[stage.name] = counts[0] if len(counts) == 1 else counts or 0
        return counts

    def _lock_run_folders(self):
        """Takes the run folder's lock for the fit (the chief's: the only writer): the loggers'
        ``version_N``, else each checkpoint folder. Raises ``RuntimeError`` naming the holder when
        another live fit writes there."""
        if not self.is_global_zero:
            return
        folders = [self.log_dir] if self.loggers else sorted({c.dirpath for c in self.checkpoint_callbacks})
        for folder in folders:
            lock = RunLock(folder=folder)
            lock.acquire()
            self._run_locks.append(lock)

    def _describe_profile(self):
        """The profiler's report, into the run's folder (read only now: the run may have failed)."""
        self.profiler.describe(log_dir=self.log_dir, chief=self.is_global_zero)

    def _log_row(self, metrics):
        with self.profiler.profile("logger write"):
            dispatch.log_row(self.loggers, metrics, self.global_step, hidden=self.results.hidden_keys)

    def _stop(self, loop, epoch) -> bool:
        """Whether the fit ends here, alike on every worker; SIGTERM/SIGINT: last.ckpt, SystemExit."""
        stop, self.should_stop, received = self._agreement.decide_stop(*loop.ends(epoch, self.should_stop))
        if received:
            path = ckpt.last_checkpoint_path(self.callbacks, self.flags.default_root_dir)
            self.save_checkpoint(path)  # written before the process exits (a failure says so)
            self._say_interrupted(received, f"the run is saved to {path}. Resume with "
                                            "fit(..., ckpt_path='last')")
            raise SystemExit(EXIT_CODES[received])
        return stop

    def _say_interrupted(self, received, what):
        """One line on stderr (the chief's) for a run a signal ended, so that a Ctrl-C is not
        just a frozen bar."""
        if self.is_global_zero:
            name = signal.Signals(received).name
            print(f"Interrupted by {name} at epoch {self.current_epoch}, global step {self.global_step}: "
                  f"{what}.", file=sys.stderr, flush=True)

    def _state_owners(self) -> dict:
        """Who owns each piece of a checkpoint's state (see ``checkpoint.build_checkpoint``)."""
        return {"trainer": self.position, "tuner": self.step_tuner, "data": self._train_source,
                "accumulation": self._steps, "lr_scheduler": self._lr_scheduler, "rng": GlobalRNG(),
                "logs": self.results, "callbacks": self._bus, "datamodule": self._datamodule}
