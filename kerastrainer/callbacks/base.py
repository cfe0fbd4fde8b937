"""The Callback base class: every hook of the training run, as no-ops to override."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import keras

    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class Callback:
    """Base class for kerastrainer callbacks.

    Override any hook. Each receives the trainer and the module first; a callback changes the run only
    through public attributes such as ``trainer.should_stop``. Batch hooks receive ``batch_idx`` but not
    the batch itself: batches stay inside the compiled step and never travel to Python.
    ``outputs`` are the scalar outputs of the compiled call's last step (``{"loss": tensor}`` for a
    default training step), still on the device until you convert them.

    With ``Trainer(steps_per_execution=N)`` the batch hooks fire once per compiled chunk of N batches;
    ``on_*_batch_start`` gets the chunk's first batch index and ``on_*_batch_end`` its last. With the
    default ``steps_per_execution="auto"``, a callback that overrides a batch hook gets one call per
    batch unless it sets ``chunk_aware = True`` (then chunks may end only where its
    `step_interval` says).

    ``on_before_optimizer_step`` is traced into the compiled training step (like ``training_step``
    itself): it runs in Python once per trace, and the TensorFlow ops it creates run every step.

    Attributes:
        chunk_aware: the batch hooks work when called once per compiled chunk.
        is_monitor: ``True`` for callbacks that act on logged values (checkpointing, early stopping).
            At every hook they run after the plain callbacks and after the module, so at epoch end they
            see everything logged, validation included.
        saves_checkpoints: ``True`` for monitors that write checkpoints; they run after the other
            monitors, so a saved file holds the state those reached.
        checks_finite: ``True`` makes the run's compiled step check that the loss and gradients
            are finite, as ``Trainer(detect_anomaly=True)`` does (`TerminateOnNaN`).

    Examples:
        >>> class PrintEpochs(Callback):
        ...     def on_train_epoch_end(self, trainer, module):
        ...         print(trainer.current_epoch, trainer.callback_metrics.get("loss"))
    """

    chunk_aware: ClassVar[bool] = False
    is_monitor: ClassVar[bool] = False
    saves_checkpoints: ClassVar[bool] = False
    checks_finite: ClassVar[bool] = False

    def step_interval(self, trainer: Trainer) -> int | None:
        """Optimizer steps between the batch ends this callback must see (``None``: any chunking).

        With ``steps_per_execution="auto"`` the trainer ends a compiled chunk at every multiple.
        """
        return None

    @property
    def state_key(self) -> str:
        """Key under which this callback's ``state_dict`` is stored in checkpoints."""
        return type(self).__qualname__

    @property
    def stored_key(self) -> str:
        """`state_key` as a checkpoint file holds it (HDF5 group names cannot hold ``/``)."""
        return self.state_key.replace("/", "|")

    def state_dict(self) -> dict[str, Any]:
        """Returns the callback's state as plain Python values or arrays."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""

    def setup(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        """Called when fit, validate, test or predict begins; ``stage`` names which."""

    def teardown(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        """Called when fit, validate, test or predict ends, also after an exception."""

    def on_fit_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called at the very beginning of fit, after setup."""

    def on_fit_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called at the very end of fit, before teardown."""

    def on_sanity_check_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called before the sanity-check validation batches."""

    def on_sanity_check_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called after the sanity-check validation batches."""

    def on_train_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when training begins, after the sanity check."""

    def on_train_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when training ends."""

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called at the start of every training epoch."""

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called at the end of every training epoch, after its validation run."""

    def on_train_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        """Called before a compiled training call (one batch, or a chunk of them)."""

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        """Called after a compiled training call."""

    def on_validation_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when a validation run begins."""

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when a validation run ends."""

    def on_validation_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called before the first validation batch."""

    def on_validation_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called after the last validation batch."""

    def on_validation_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        """Called before a compiled validation call."""

    def on_validation_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                                batch_idx: int) -> None:
        """Called after a compiled validation call."""

    def on_test_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when a test run begins."""

    def on_test_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when a test run ends."""

    def on_test_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called before the first test batch."""

    def on_test_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called after the last test batch."""

    def on_test_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        """Called before a compiled test call."""

    def on_test_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                          batch_idx: int) -> None:
        """Called after a compiled test call."""

    def on_predict_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when prediction begins."""

    def on_predict_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called when prediction ends."""

    def on_predict_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        """Called before the first prediction batch."""

    def on_predict_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        """Called after the last prediction batch."""

    def on_predict_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        """Called before each prediction batch."""

    def on_predict_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                             batch_idx: int) -> None:
        """Called after each prediction batch; ``outputs`` is that batch's prediction tensor(s)."""

    def on_after_backward(self, trainer: Trainer, module: TrainModule, gradients: list,
                          variables: list) -> None:
        """Traced into the compiled training step once the gradients exist (loss scaling undone,
        before clipping, accumulation and the optimizer): ``gradients[i]`` is that of
        ``variables[i]``, ``None`` where the loss does not reach it. Log from here with
        ``module.log`` (no host transfer), as ``GradientNormMonitor`` does. With several
        replicas: each replica's gradients; with accumulation: each batch's."""

    def on_before_optimizer_step(self, trainer: Trainer, module: TrainModule,
                                 optimizer: keras.optimizers.Optimizer) -> None:
        """Traced into the compiled training step, before the optimizer applies gradients."""

    def on_save_checkpoint(self, trainer: Trainer, module: TrainModule, checkpoint: dict) -> None:
        """Called when a checkpoint is assembled; add entries to ``checkpoint`` if needed."""

    def on_load_checkpoint(self, trainer: Trainer, module: TrainModule, checkpoint: dict) -> None:
        """Called when a checkpoint is loaded, before training resumes."""

    def on_exception(self, trainer: Trainer, module: TrainModule, exception: BaseException) -> None:
        """Called when any exception escapes the run, before it propagates."""


#: Every hook name, in the order the Callback class declares them.
HOOK_NAMES = tuple(
    name
    for name in vars(Callback)
    if name == "setup" or name == "teardown" or name.startswith("on_")
)
