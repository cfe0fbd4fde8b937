"""TrainModule: a keras.Model that says what to compute; the Trainer decides when."""

from __future__ import annotations

import inspect
import os
import sys

import keras

from kerastrainer import losses
from kerastrainer.building import build_from_spec, rebuild_by_step, rebuilding, unpack_batch
from kerastrainer.hooks import overrides
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
    """Whether ``module`` can run ``stage``'s step: it defines it, or a loss for the default one.
    (Anything but a TrainModule passes: the Trainer refuses it by its type.)"""
    if not isinstance(module, TrainModule):
        return True
    return overrides(module, stage.step, TrainModule) or _user_loss(module) is not None


def check_can_train(module) -> None:
    """Raises ``NotImplementedError`` when ``module`` defines neither ``loss`` nor ``training_step``."""
    if not can_run(module, TRAIN):
        raise NotImplementedError(module._no_loss_message())


def _set_trainable(layers, value: bool) -> None:
    # Keras's setter skips sublayers when the parent's own flag does not change (a model whose
    # backbone alone was frozen), so every nested layer is set explicitly.
    for layer in layers:
        for inner in layer._flatten_layers(include_self=True):
            inner.trainable = value


def _keras_only(name: str):
    def method(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__name__}.{name}() is Keras's own training API and is not used with a "
            "TrainModule. Train with kerastrainer instead: "
            "kt.Trainer(max_epochs=...).fit(module, train_data=...), then trainer.validate/test/predict."
        )

    method.__name__ = name
    method.__doc__ = f"Disabled: use ``kt.Trainer`` instead of ``Model.{name}``."
    return method


class TrainModule(keras.Model):
    """A ``keras.Model`` that knows how to train itself, driven by a :class:`kerastrainer.Trainer`.

    Subclass it and write ``call`` (the forward pass), ``loss(y_true, y_pred)`` and
    ``configure_optimizer()``. Optionally ``configure_metrics()``, the ``*_step`` methods and any hook
    of :class:`kerastrainer.Callback` (here without the ``trainer, module`` arguments).

    Attributes:
        automatic_optimization: when ``False``, ``training_step`` applies gradients itself.
        trainer: the Trainer running this module (set when a run starts, kept after it ends).
        optimizer: the optimizer from ``configure_optimizer()`` (set by the Trainer, as ``compile`` does).

    Example:
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

    def __init__(self, *args, **kwargs):
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
    def configure_optimizer(self):
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
        after the metric's ``name``.
        """
        return []

    def training_step(self, batch, batch_idx=None):
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

    def validation_step(self, batch, batch_idx=None):
        """Computes the loss (reported as ``val_loss``) and metrics of one validation batch."""
        return self._evaluate_batch(batch, "validation_step")

    def test_step(self, batch, batch_idx=None):
        """Computes the loss (reported as ``test_loss``) and metrics of one test batch."""
        return self._evaluate_batch(batch, "test_step")

    def predict_step(self, batch, batch_idx=None):
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
    def compute_step_loss(self, y_true, y_pred, sample_weight=None, *, step: str = "training_step"):
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
        if loss_fn is None:
            raise NotImplementedError(self._no_loss_message(step))
        return losses.step_loss(self, loss_fn, y_true, y_pred, sample_weight,
                                where=f"{type(self).__name__}.{step}")

    def _no_loss_message(self, step: str = "training_step") -> str:
        return (
            f"{type(self).__name__} defines neither loss(self, y_true, y_pred) nor {step}(). "
            "Add a loss method, e.g. `def loss(self, y_true, y_pred): return "
            f"keras.losses.mean_squared_error(y_true, y_pred)`, or override {step}."
        )

    def update_metrics(self, y_true, y_pred, sample_weight=None) -> None:
        """Updates this stage's ``configure_metrics()`` objects; call it from your own step overrides."""
        if self.trainer is not None:
            self.trainer.results.update_metrics(y_true, y_pred, sample_weight)  # else: building

    def log(self, name, value, *, on_step=None, on_epoch=None, prog_bar=False, logger=True,
            reduce_fx="mean", sync_dist=False) -> None:
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
        self.trainer.results.log(
            name, value, on_step=on_step, on_epoch=on_epoch, prog_bar=prog_bar, logger=logger,
            reduce_fx=reduce_fx, sync_dist=sync_dist,
        )

    def log_dict(self, values: dict, **kwargs) -> None:
        """Calls :meth:`log` for every item of ``values`` with the same options."""
        for name, value in values.items():
            self.log(name, value, **kwargs)

    def freeze(self, *layers) -> None:
        """Makes ``layers`` (default: the whole module) non-trainable.

        The Trainer notices the change at the next epoch start and retraces the training step once.
        """
        _set_trainable(layers or (self,), False)

    def unfreeze(self, *layers) -> None:
        """Makes ``layers`` (default: the whole module) trainable again; see :meth:`freeze`."""
        _set_trainable(layers or (self,), True)

    def optimizers(self):
        """Returns the configured optimizer (or the dict of named optimizers)."""
        return self.optimizer

    # ------------------------------------------------------------------ hyperparameters
    def save_hyperparameters(self, *names, ignore=None) -> None:
        """Stores the ``__init__`` arguments in ``self.hparams`` (and in checkpoints).

        Args:
            *names: keep only these arguments; or pass one dict of hyperparameters instead.
            ignore: argument name(s) to leave out.
        """
        frame = sys._getframe(1)
        object.__setattr__(self, "_kt_hparams", normalize_hparams(names, frame, ignore))

    @classmethod
    def load_from_checkpoint(cls, path, **overrides):
        """Rebuilds a module from a checkpoint: ``cls(**hparams, **overrides)``, built, weights loaded.

        No Trainer and no data are needed: the checkpoint stores the hyperparameters and the input
        spec. Works with full and ``save_weights_only`` checkpoints.

        Args:
            path: the checkpoint file.
            **overrides: hyperparameters to change or supply (e.g. ones that were not saved).

        Returns:
            The module, ready for ``module(x)``, ``module.predict`` or a new ``Trainer``.

        Raises:
            FileNotFoundError: no such file.
            ValueError: a corrupted file, or variables that do not match (all of them listed).
            TypeError: the saved hyperparameters do not fit ``cls.__init__``.

        Example:
            >>> module = DigitClassifier.load_from_checkpoint("checkpoints/last.ckpt")  # doctest: +SKIP
        """
        from kerastrainer.checkpoint import restore_weights, spec_from_tree
        from kerastrainer.checkpoint_io import read_checkpoint

        tree = read_checkpoint(path)
        hparams = dict(tree["module"].get("hparams", {}))
        params = inspect.signature(cls.__init__).parameters.values()
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            # hparams saved by a parent __init__ may not all be arguments of this class (Lightning
            # filters the same way); explicit overrides are passed as given.
            names = {p.name for p in params}
            hparams = {k: v for k, v in hparams.items() if k in names}
        hparams.update(overrides)
        try:
            module = cls(**hparams)
        except TypeError as error:
            raise TypeError(
                f"{cls.__name__}.load_from_checkpoint({str(path)!r}) could not rebuild the module with "
                f"the saved hyperparameters {sorted(hparams)}: {error}. Pass missing or renamed "
                "arguments as keyword overrides."
            ) from error
        saved = tree["module"]
        if "build" in saved:  # its own step built it: trace that step again
            rebuild_by_step(module, saved["build"]["step"], spec_from_tree(saved["build"]["batch"]))
        elif "input_spec" in saved:
            build_from_spec(module, spec_from_tree(saved["input_spec"]))
        restore_weights(module, tree, os.fspath(path))
        return module

    @property
    def hparams(self) -> AttributeDict:
        """The saved hyperparameters, readable as ``hparams.lr`` or ``hparams["lr"]``."""
        return self._kt_hparams

    @property
    def input_signature(self):
        """The spec of the module's inputs (batch dimension ``None``), recorded from the data when
        a Trainer builds it or from a checkpoint; ``None`` before. Exports and checkpoints use it."""
        return self._kt_input_signature

    @property
    def build_recipe(self):
        """How the module was built when its own step did it: ``{"step": name, "batch": spec}``
        (the step was traced once on batches of that spec); ``None`` when ``call`` built it.
        Checkpoints keep it, so ``load_from_checkpoint`` builds the module the same way."""
        return self._kt_build_recipe

    def set_input_signature(self, spec, *, build_recipe=None) -> None:
        """Records the spec of the inputs, and how the module was built (the Trainer does it)."""
        # Not through Keras's attribute tracking, which would wrap a dict of specs.
        object.__setattr__(self, "_kt_input_signature", spec)
        if build_recipe is not None:
            object.__setattr__(self, "_kt_build_recipe", build_recipe)

    @property
    def trainer(self):
        """The :class:`kerastrainer.Trainer` running (or that last ran) this module."""
        return self._kt_trainer

    @trainer.setter
    def trainer(self, value) -> None:
        object.__setattr__(self, "_kt_trainer", value)

    # ------------------------------------------------------------------ Keras's own loop is off
    compile = _keras_only("compile")
    fit = _keras_only("fit")
    evaluate = _keras_only("evaluate")
    train_on_batch = _keras_only("train_on_batch")
    test_on_batch = _keras_only("test_on_batch")

    # ------------------------------------------------------------------ hooks (no trainer/module args)
    def setup(self, stage):
        """See :meth:`kerastrainer.Callback.setup`."""

    def teardown(self, stage):
        """See :meth:`kerastrainer.Callback.teardown`."""

    def on_fit_start(self): """See :class:`kerastrainer.Callback`."""
    def on_fit_end(self): """See :class:`kerastrainer.Callback`."""
    def on_sanity_check_start(self): """See :class:`kerastrainer.Callback`."""
    def on_sanity_check_end(self): """See :class:`kerastrainer.Callback`."""
    def on_train_start(self): """See :class:`kerastrainer.Callback`."""
    def on_train_end(self): """See :class:`kerastrainer.Callback`."""
    def on_train_epoch_start(self): """See :class:`kerastrainer.Callback`."""
    def on_train_epoch_end(self): """See :class:`kerastrainer.Callback`."""
    def on_train_batch_start(self, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_train_batch_end(self, outputs, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_validation_start(self): """See :class:`kerastrainer.Callback`."""
    def on_validation_end(self): """See :class:`kerastrainer.Callback`."""
    def on_validation_epoch_start(self): """See :class:`kerastrainer.Callback`."""
    def on_validation_epoch_end(self): """See :class:`kerastrainer.Callback`."""
    def on_validation_batch_start(self, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_validation_batch_end(self, outputs, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_test_start(self): """See :class:`kerastrainer.Callback`."""
    def on_test_end(self): """See :class:`kerastrainer.Callback`."""
    def on_test_epoch_start(self): """See :class:`kerastrainer.Callback`."""
    def on_test_epoch_end(self): """See :class:`kerastrainer.Callback`."""
    def on_test_batch_start(self, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_test_batch_end(self, outputs, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_predict_start(self): """See :class:`kerastrainer.Callback`."""
    def on_predict_end(self): """See :class:`kerastrainer.Callback`."""
    def on_predict_epoch_start(self): """See :class:`kerastrainer.Callback`."""
    def on_predict_epoch_end(self): """See :class:`kerastrainer.Callback`."""
    def on_predict_batch_start(self, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_predict_batch_end(self, outputs, batch_idx): """See :class:`kerastrainer.Callback`."""
    def on_before_optimizer_step(self, optimizer): """See :class:`kerastrainer.Callback`."""
    def on_save_checkpoint(self, checkpoint): """See :class:`kerastrainer.Callback`."""
    def on_load_checkpoint(self, checkpoint): """See :class:`kerastrainer.Callback`."""
    def on_exception(self, exception): """See :class:`kerastrainer.Callback`."""
