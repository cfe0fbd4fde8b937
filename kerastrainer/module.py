"""TrainModule: a keras.Model that says what to compute; the Trainer decides when."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import keras

from kerastrainer import compile_args, losses, recorder
from kerastrainer.building import rebuilding, unpack_batch
from kerastrainer.hooks import overrides
from kerastrainer.module_hooks import ModuleHooks
from kerastrainer.hparams import AttributeDict, normalize_hparams
from kerastrainer.stages import TRAIN


def _user_loss(module) -> object | None:
    """The ``loss`` method a TrainModule subclass defines, if any (not Keras's own)."""
    for cls in type(module).__mro__:
        if cls is TrainModule:
            return None
        if "loss" in vars(cls) and callable(vars(cls)["loss"]):
            return vars(cls)["loss"]
    return None


def can_run(module, stage) -> bool:
    """Whether ``module`` can run ``stage``'s step: it defines it, or a loss for the default one,
    or it trains with the default training step, whose loss may be the model's ``add_loss``
    terms alone (the first trace refuses a module with no loss of any kind). (Anything but a
    TrainModule passes: the Trainer refuses it by its type.)"""
    if not isinstance(module, TrainModule):
        return True
    return (overrides(module, stage.step, TrainModule) or _user_loss(module) is not None
            or not overrides(module, TRAIN.step, TrainModule))


def check_module(module) -> None:
    """Refuses what a Trainer cannot run: not a TrainModule, or one whose ``__init__`` never
    called ``super().__init__()`` (Keras's layer state and the module's own are missing).

    Raises:
        TypeError: ``module`` is not a TrainModule.
        RuntimeError: ``super().__init__()`` was not called.
    """
    if not isinstance(module, TrainModule):
        raise TypeError("Trainer needs a kerastrainer.TrainModule (a keras.Model subclass with "
                        f"call, loss and configure_optimizer). Received: {type(module).__name__}")
    if "_kt_input_signature" not in vars(module):
        raise RuntimeError(
            f"{type(module).__name__}.__init__ did not call super().__init__(), so the module is "
            "not set up. Call it first: def __init__(self, ...): super().__init__(); ...")


def _set_trainable(layers, value: bool) -> None:
    # Keras's setter skips sublayers when the parent's own flag does not change (a model whose
    # backbone alone was frozen), so every nested layer is set explicitly.
    for layer in layers:
        for inner in layer._flatten_layers(include_self=True):
            inner.trainable = value


#: The prefix of a step's logged names (``val_department_loss``).
_STEP_PREFIX = {"training_step": "", "validation_step": "val_", "test_step": "test_"}


def _first_line(error: BaseException) -> str:
    """The first non-blank line of ``error``'s message."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _keras_only(name: str) -> Callable[..., NoReturn]:
    def method(self: TrainModule, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(
            f"{type(self).__name__}.{name}() is Keras's own training API and is not used with a "
            "TrainModule. Train with kerastrainer instead: "
            "kt.Trainer(max_epochs=...).fit(module, train_data=...), then trainer.validate/test/predict."
        )

    method.__name__ = name
    method.__doc__ = f"Disabled: use ``kt.Trainer`` instead of ``Model.{name}``."
    return method


class TrainModule(ModuleHooks, keras.Model):
    """A ``keras.Model`` that knows how to train itself, driven by a [`kerastrainer.Trainer`][kerastrainer.Trainer].

    Subclass it and write ``call`` (the forward pass), ``loss(y_true, y_pred)`` and
    ``configure_optimizer()``. Optionally ``configure_metrics()``, the ``*_step`` methods and any hook
    of [`kerastrainer.Callback`][kerastrainer.Callback] (here without the ``trainer, module`` arguments).

    Attributes:
        automatic_optimization: when ``False``, ``training_step`` applies gradients itself.
        trainer: the Trainer running this module (set when a run starts, kept after it ends).
        optimizer: the optimizer from ``configure_optimizer()`` (set by the Trainer, as ``compile`` does).

    Examples:
        >>> class Regressor(TrainModule):
        ...     def __init__(self, units=8):
        ...         super().__init__()
        ...         self.save_hyperparameters()
        ...         self.dense = keras.layers.Dense(units)
        ...         self.out = keras.layers.Dense(1)
        ...     def call(self, x, training=False):
        ...         return self.out(self.dense(x))
        ...     def loss(self, y_true, y_pred):
        ...         return keras.losses.mean_squared_error(y_true, y_pred)
        ...     def configure_optimizer(self):
        ...         return keras.optimizers.Adam(1e-3)
    """

    automatic_optimization = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # keras.Model.__init__ assigns `self.loss = None`; that instance attribute would hide the
        # subclass's `loss` method, so drop it again.
        if self.__dict__.get("loss", ...) is None:
            del self.__dict__["loss"]
        object.__setattr__(self, "_kt_hparams", AttributeDict())
        object.__setattr__(self, "_kt_trainer", None)
        object.__setattr__(self, "_kt_input_signature", None)
        object.__setattr__(self, "_kt_build_recipe", None)

    # ------------------------------------------------------------------ what users write
    def configure_optimizer(self) -> keras.optimizers.Optimizer:
        """Returns the optimizer: a ``keras.optimizers.Optimizer``.

        With ``automatic_optimization = False`` it may return a dict of named optimizers.

        Raises:
            NotImplementedError: when not overridden.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define configure_optimizer(self) returning a Keras optimizer, "
            "e.g. `return keras.optimizers.Adam(1e-3)`."
        )

    def configure_metrics(self) -> list:
        """Returns Keras metrics, updated by the default steps and reset every epoch/evaluation.

        Each stage (train, val, test) gets its own objects, named ``acc`` / ``val_acc`` / ``test_acc``
        after the metric's ``name``. They are updated without the batch's sample weights (and
        class weights), as Keras's ``compile(metrics=...)`` are; weighted ones come from
        `configure_weighted_metrics`.
        """
        return []

    def configure_weighted_metrics(self) -> list:
        """Returns Keras metrics updated with the batch's sample weights (and ``class_weight``), as
        Keras's ``compile(weighted_metrics=...)`` are; same forms and names as `configure_metrics`
        (a name an unweighted metric has too becomes ``weighted_<name>``, Keras's rule).

        Example:
            >>> def configure_weighted_metrics(self):  # doctest: +SKIP
            ...     return [keras.metrics.SparseCategoricalAccuracy(name="acc")]
        """
        return []

    def training_step(self, batch: Any, batch_idx: Any = None) -> Any:
        """Computes the loss of one training batch; the Trainer takes the gradient and applies it.

        Args:
            batch: one batch from the training data.
            batch_idx: the batch index within the epoch, a scalar int64 tensor.

        Returns:
            The scalar loss tensor, or a dict holding ``"loss"``.
        """
        x, y, sample_weight = unpack_batch(batch, f"{type(self).__name__}.training_step")
        y_pred = self(x, training=True)
        loss = self.compute_step_loss(y, y_pred, sample_weight, step="training_step")
        self.update_metrics(y, y_pred, sample_weight)
        return loss

    def validation_step(self, batch: Any, batch_idx: Any = None) -> Any:
        """Computes the loss (reported as ``val_loss``) and metrics of one validation batch."""
        return self._evaluate_batch(batch, "validation_step")

    def test_step(self, batch: Any, batch_idx: Any = None) -> Any:
        """Computes the loss (reported as ``test_loss``) and metrics of one test batch."""
        return self._evaluate_batch(batch, "test_step")

    def predict_step(self, batch: Any, batch_idx: Any = None) -> Any:
        """Returns the model's prediction for one batch (``module.predict`` uses it too)."""
        x, _, _ = unpack_batch(batch, f"{type(self).__name__}.predict_step")
        return self(x, training=False)

    def _evaluate_batch(self, batch, step: str):
        x, y, sample_weight = unpack_batch(batch, f"{type(self).__name__}.{step}")
        y_pred = self(x, training=False)
        loss = self.compute_step_loss(y, y_pred, sample_weight, step=step)
        self.update_metrics(y, y_pred, sample_weight)
        return loss

    # ------------------------------------------------------------------ helpers for steps
    def compute_step_loss(self, y_true: Any, y_pred: Any, sample_weight: Any = None, *,
                          step: str = "training_step") -> Any:
        """Calls the user's ``loss``, reduces it to a scalar mean and adds the regularization losses.

        ``sample_weight`` is passed as the third argument when the batch has one and ``loss`` accepts
        it; otherwise the per-example losses are weighted here (weights of shape ``(n,)`` or
        ``(n, 1)``). ``self.losses`` (``kernel_regularizer``, ``activity_regularizer``,
        ``add_loss``) of the call that made ``y_pred`` is added, as under Keras's ``fit``; a
        ``training_step`` that computes its loss another way adds ``sum(self.losses)`` itself.

        Raises:
            ValueError: the batch has no targets, Keras could not compare ``y_pred`` with ``y``, or
                the sample weights do not fit the losses.
        """
        loss_fn = _user_loss(self)
        if loss_fn is None:  # Keras's compile(loss=None): the add_loss terms are the loss
            return losses.added_loss(self, self._no_loss_message(step))
        return losses.step_loss(self, loss_fn, y_true, y_pred, sample_weight,
                                where=f"{type(self).__name__}.{step}")

    def _no_loss_message(self, step: str = "training_step") -> str:
        return (
            f"{type(self).__name__} defines neither loss(self, y_true, y_pred) nor {step}(), and "
            "its call added no loss (self.add_loss). Add a loss method, e.g. `def loss(self, "
            f"y_true, y_pred): return keras.losses.mean_squared_error(y_true, y_pred)`, or "
            f"override {step}."
        )

    def update_metrics(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Updates this stage's ``configure_metrics()`` objects; call it from your own step overrides."""
        recording = recorder.active()
        if recording is not None:  # outside a traced step (a hook, building the module): nothing to do
            recording.update_metrics(y_true, y_pred, sample_weight)

    def log(self, name: str, value: Any, *, on_step: bool | None = None,
            on_epoch: bool | None = None, prog_bar: bool = False, logger: bool = True,
            reduce_fx: str = "mean", sync_dist: bool = False) -> None:
        """Logs a scalar; works inside compiled steps (no host transfer) and in hooks.

        Args:
            name: the key in ``trainer.callback_metrics``. Prefix it yourself (``val_mae``).
            value: a scalar tensor or number.
            on_step: keep the latest value (default ``True`` in training, ``False`` otherwise).
            on_epoch: keep the epoch's mean (default ``False`` in training, ``True`` otherwise).
                With both, the keys are ``<name>_step`` and ``<name>_epoch``.
            prog_bar: show it on the progress bar.
            logger: send it to the loggers.
            reduce_fx: how ``on_epoch`` combines steps: ``"mean"`` (weighted by batch size),
                ``"sum"``, ``"max"`` or ``"min"``. Values of several replicas combine the same way.
            sync_dist: under MultiWorkerMirrored, combine the value over all workers (read at
                the workers' common sync points). ``False`` (default): each worker reports the
                value of its own replicas, with no collective. One process (one device or
                Mirrored) always combines all its replicas.

        Raises:
            RuntimeError: when no Trainer runs this module.
            ValueError: a value that is not a scalar.
        """
        if self.trainer is None:
            if rebuilding():
                return  # load_from_checkpoint traces a step to build the module: nothing to log
            raise RuntimeError(
                f"{type(self).__name__}.log({name!r}, ...) was called outside a Trainer run. Call it "
                "from a step or a hook while trainer.fit/validate/test runs."
            )
        recorder.check_log_call(name, value, reduce_fx)
        recording = recorder.active()
        if recording is None:  # a hook or a callback
            self.trainer.results.log_from_hook(name, value, prog_bar=prog_bar, logger=logger)
            return
        recording.log(name, value, on_step=on_step, on_epoch=on_epoch, prog_bar=prog_bar, logger=logger,
                      reduce_fx=reduce_fx, sync_dist=sync_dist)

    def log_dict(self, values: dict, **kwargs) -> None:
        """Calls `log` for every item of ``values`` with the same options."""
        for name, value in values.items():
            self.log(name, value, **kwargs)

    def freeze(self, *layers) -> None:
        """Makes ``layers`` (default: the whole module) non-trainable.

        The Trainer notices the change at the next epoch start and retraces the training step once.
        """
        _set_trainable(layers or (self,), False)

    def unfreeze(self, *layers) -> None:
        """Makes ``layers`` (default: the whole module) trainable again; see `freeze`."""
        _set_trainable(layers or (self,), True)

    def optimizers(self) -> Any:
        """Returns the configured optimizer (or the dict of named optimizers)."""
        return self.optimizer

    # ------------------------------------------------------------------ hyperparameters
    def save_hyperparameters(self, *names: str, ignore: str | Iterable[str] | None = None) -> None:
        """Stores the ``__init__`` arguments in ``self.hparams`` (and in checkpoints).

        Args:
            *names: keep only these arguments; or pass one dict of hyperparameters instead.
            ignore: argument name(s) to leave out.
        """
        frame = sys._getframe(1)
        object.__setattr__(self, "_kt_hparams", normalize_hparams(names, frame, ignore))

    @classmethod
    def load_from_checkpoint(cls, path: str | os.PathLike, *, safe_mode: bool = True,
                             **overrides: Any) -> TrainModule:
        """Rebuilds a module from a checkpoint: ``cls(**hparams, **overrides)``, built as in its
        run, weights loaded; no Trainer or data needed. Full and ``save_weights_only`` checkpoints
        work.

        ``kt.TrainModule.load_from_checkpoint`` rebuilds the class the checkpoint names, which must
        be a ``TrainModule`` subclass already imported in this process (a file is untrusted input:
        nothing it names is imported or called); ``safe_mode=False`` lets it import the module the
        file names, for files you trust. A subclass's ``load_from_checkpoint`` (``Clf.load_from_checkpoint``)
        builds that class and never looks at the name in the file.

        Args:
            path: the checkpoint file.
            safe_mode: with ``kt.TrainModule``, import nothing the file names (Keras's ``safe_mode``).
            **overrides: hyperparameters to change or supply (e.g. ones that were not saved).

        Returns:
            The module, ready for ``module(x)``, ``module.predict`` or a new ``Trainer``.

        Raises:
            FileNotFoundError: no such file.
            ValueError: a corrupted file, or variables that do not match (all of them listed).
            TypeError: the saved hyperparameters do not fit ``cls.__init__``.
            ValueError: with ``kt.TrainModule``, the file names a class that is not an imported
                ``TrainModule`` subclass (with ``safe_mode=False``: none after importing its module).

        Examples:
            >>> module = DigitClassifier.load_from_checkpoint("checkpoints/last.ckpt")  # doctest: +SKIP
        """
        from kerastrainer.checkpoint import load_module

        return load_module(cls, path, overrides, saved_class=cls is TrainModule, safe_mode=safe_mode)

    @classmethod
    def from_keras(cls, model: keras.Model, *, loss: Any = None, optimizer: Any = "rmsprop",
                   metrics: Any = None, loss_weights: Any = None,
                   weighted_metrics: Any = None) -> TrainModule:
        """A TrainModule for an existing functional or Sequential ``keras.Model``, from what
        ``compile`` takes: no subclass needed.

        Args:
            model: the ``keras.Model``.
            loss: a loss name, a ``keras.losses.Loss`` or a function; a dict (by output name) or
                list (by output) of them for several outputs. ``None`` (as ``compile`` without a
                loss): the model's ``add_loss`` terms are the whole loss.
            optimizer: an optimizer name or object (every fit gets a fresh copy).
            metrics: metric names or objects (a custom ``keras.metrics.Metric`` needs no
                registration): a list (for every output) or a dict by output name. Updated
                without sample weights, as ``compile``'s ``metrics``.
            loss_weights: the weight of each output's loss: a dict by output name, or a list.
            weighted_metrics: metrics updated with the sample weights and class weights
                (``compile``'s ``weighted_metrics``), same forms as ``metrics``.

        Returns:
            A `KerasModule`, whose checkpoints rebuild it with ``load_from_checkpoint``.

        Examples:
            >>> kt.TrainModule.from_keras(model, loss="mse", optimizer="adam")  # doctest: +SKIP
        """
        return KerasModule(model, loss=loss, optimizer=optimizer, metrics=metrics,
                           loss_weights=loss_weights, weighted_metrics=weighted_metrics)

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters, readable as ``hparams.lr`` or ``hparams["lr"]``."""
        return self._kt_hparams

    @property
    def input_signature(self) -> Any:
        """The spec of the module's inputs (batch dimension ``None``), recorded from the data when
        a Trainer builds it or from a checkpoint; ``None`` before. Exports and checkpoints use it."""
        return self._kt_input_signature

    @property
    def build_recipe(self) -> dict | None:
        """How the module was built when its own step did it: ``{"step": name, "batch": spec}``
        (the step was traced once on batches of that spec); ``None`` when ``call`` built it.
        Checkpoints keep it, so ``load_from_checkpoint`` builds the module the same way."""
        return self._kt_build_recipe

    def set_input_signature(self, spec: Any, *, build_recipe: dict | None = None) -> None:
        """Records the spec of the inputs, and how the module was built (the Trainer does it)."""
        # Not through Keras's attribute tracking, which would wrap a dict of specs.
        object.__setattr__(self, "_kt_input_signature", spec)
        if build_recipe is not None:
            object.__setattr__(self, "_kt_build_recipe", build_recipe)

    @property
    def trainer(self) -> Any:
        """The [`kerastrainer.Trainer`][kerastrainer.Trainer] running (or that last ran) this module."""
        return self._kt_trainer

    @trainer.setter
    def trainer(self, value: Any) -> None:
        object.__setattr__(self, "_kt_trainer", value)

    @property
    def current_epoch(self) -> int:
        """The trainer's current epoch (0 before any run), as Lightning's module has it."""
        return self._kt_trainer.current_epoch if self._kt_trainer is not None else 0

    @property
    def global_step(self) -> int:
        """The trainer's optimizer steps so far (0 before any run)."""
        return self._kt_trainer.global_step if self._kt_trainer is not None else 0

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the chief only (in a hook, not in a compiled step: use ``tf.print`` there)."""
        if self._kt_trainer is None or self._kt_trainer.is_global_zero:
            print(*args, **kwargs)

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
        """Keras's whole-model save (``.keras``, ``.h5``), as ``keras.Model.save``; Keras's own
        ``ModelCheckpoint("m_{epoch}.keras")`` calls it.

        Raises:
            NotImplementedError: Keras cannot write this class as a whole model (its ``__init__``
                takes arguments that ``get_config`` does not return); the message names the forms
                that save it.
        """
        try:
            super().save(filepath, *args, **kwargs)
        except NotImplementedError as error:
            name = type(self).__name__
            raise NotImplementedError(
                f"{name}.save({str(filepath)!r}) cannot write a whole-model file: Keras needs "
                f"{name}.get_config() to rebuild the class, and its __init__ takes arguments it "
                "cannot serialize. Save the weights instead: save_weights('m.weights.h5') (Keras's "
                "ModelCheckpoint(..., save_weights_only=True)), or trainer.save_checkpoint(path) for "
                f"an exact resume; or define get_config(). Keras said: {_first_line(error)}"
            ) from error

    # ------------------------------------------------------------------ Keras's own loop is off
    compile = _keras_only("compile")
    fit = _keras_only("fit")
    evaluate = _keras_only("evaluate")
    train_on_batch = _keras_only("train_on_batch")
    test_on_batch = _keras_only("test_on_batch")


class KerasModule(TrainModule):
    """A ``keras.Model`` (functional or Sequential) trained with ``compile``'s arguments; made by
    `TrainModule.from_keras`.

    The loss is what ``compile`` computes: per output, the batch mean (sample weights applied),
    weighted by ``loss_weights`` and summed, plus the regularization losses; metrics are named as
    ``compile`` names them (``accuracy``, ``<output>_accuracy``). Its hyperparameters are the
    serialized model, loss, optimizer and metrics, so ``KerasModule.load_from_checkpoint(path)``
    (or ``kt.TrainModule.load_from_checkpoint(path)``) rebuilds it without the original objects.
    """

    def __init__(self, model, *, loss=None, optimizer="rmsprop", metrics=None, loss_weights=None,
                 weighted_metrics=None):
        super().__init__()
        self.save_hyperparameters({"model": compile_args.serialized(model),
                                   "loss": compile_args.serialized(loss),
                                   "optimizer": compile_args.serialized(optimizer),
                                   "metrics": compile_args.serialized(metrics),
                                   "loss_weights": loss_weights,
                                   "weighted_metrics": compile_args.serialized(weighted_metrics)})
        # The objects as handed over (a custom Metric class needs no registration); a module
        # rebuilt from a checkpoint has their serialized form only.
        # Not through Keras's attribute tracking, which would make their variables the model's.
        object.__setattr__(self, "_given_metrics", {"metrics": metrics, "weighted_metrics": weighted_metrics})
        self.model = compile_args.deserialized_model(model)
        self.output_keys = compile_args.output_names(self.model)
        self._output_losses = {} if loss is None else {  # None: the model's add_loss terms only
            key: compile_args.per_example_loss(item)
            for key, item in compile_args.per_output(loss, self.output_keys, "loss").items()}
        weights = compile_args.per_output(loss_weights or 1.0, self.output_keys, "loss_weights")
        self._loss_weights = {key: float(weight) for key, weight in weights.items()}

    def _by_name(self, value):
        """A multi-output structure as a dict by output name (lists are in output order)."""
        if self.output_keys is None or value is None or isinstance(value, dict):
            return value
        return dict(zip(self.output_keys, value))

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def loss(self, y_true, y_pred):
        """Each output's per-example loss, weighted and summed (its batch mean is compile's loss)."""
        y_true = self._by_name(y_true)
        y_pred = self._by_name(y_pred)
        return sum(self._loss_weights.get(key, 1.0) * compile_args.output_loss(
            fn, y_true if key is None else y_true[key], y_pred if key is None else y_pred[key])
            for key, fn in self._output_losses.items())

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
        """Saves the user's Keras model as a whole (``keras.models.load_model`` reads it back as
        that model, with its trained weights), as ``model.save`` would."""
        self.model.save(filepath, *args, **kwargs)

    def compute_step_loss(self, y_true: Any, y_pred: Any, sample_weight: Any = None, *,
                          step: str = "training_step") -> Any:
        """``compile``'s loss; with ``loss=None``, the sum of the model's ``add_loss`` terms, as
        Keras trains an endpoint-layer model compiled with an optimizer only."""
        if not self._output_losses:
            return losses.added_loss(self, (
                f"from_keras got loss=None and the model's call added no loss (add_loss), so there "
                f"is nothing to train in {step}. Pass loss=..., e.g. loss=\"mse\", or add the "
                "loss in a layer with self.add_loss(...)."))
        if len(self._output_losses) > 1 and y_true is not None:
            self._log_output_losses(y_true, y_pred, sample_weight, step)
        return super().compute_step_loss(y_true, y_pred, sample_weight, step=step)

    def _log_output_losses(self, y_true, y_pred, sample_weight, step: str) -> None:
        """Logs each output's loss as a multi-output ``fit`` reports it: ``<output>_loss`` (and
        ``val_``/``test_``), the batch mean before ``loss_weights``, averaged over the epoch."""
        prefix = _STEP_PREFIX.get(step, "")
        y_true = self._by_name(y_true)
        y_pred = self._by_name(y_pred)
        for key, fn in self._output_losses.items():
            per_example = compile_args.output_loss(fn, y_true[key], y_pred[key])
            weights = sample_weight[key] if isinstance(sample_weight, dict) else sample_weight
            value = (losses.weighted_mean(per_example, weights, f"{type(self).__name__}.{step}")
                     if weights is not None else keras.ops.mean(per_example))
            self.log(f"{prefix}{key}_loss", value, on_step=False, on_epoch=True)

    def configure_optimizer(self):
        return keras.optimizers.get(self.hparams.optimizer)  # a fresh one, from its config

    def configure_metrics(self):
        return self._metrics_of("metrics")

    def configure_weighted_metrics(self):
        return self._metrics_of("weighted_metrics")

    def _metrics_of(self, which: str):
        """``compile``'s ``metrics`` or ``weighted_metrics`` as metric objects: the user's own
        objects when this module was made from them (fresh copies for every stage but the first),
        else rebuilt from the hyperparameters."""
        loss = self.hparams.loss
        metrics = self._given_metrics[which] if self._given_metrics[which] is not None else \
            self.hparams.get(which)
        if metrics is None:
            return []
        chosen = compile_args.per_output(metrics, self.output_keys, which, by_position=False)
        made = {key: [compile_args.make_metric(m, loss.get(key) if isinstance(loss, dict) else loss)
                      for m in (ms if isinstance(ms, (list, tuple)) else [ms])] for key, ms in chosen.items()}
        return made[None] if self.output_keys is None else made

    def update_metrics(self, y_true, y_pred, sample_weight=None) -> None:
        super().update_metrics(self._by_name(y_true), self._by_name(y_pred), sample_weight)
