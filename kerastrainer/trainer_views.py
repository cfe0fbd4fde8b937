"""The Trainer's read-only views of its run: metrics, progress and the run folder, typed.

A base class of `kerastrainer.Trainer`; each view reads an owner the Trainer holds (`Results`,
`LoopPosition`, the loggers) and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerastrainer.callbacks.early_stopping import EarlyStopping
from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
from kerastrainer.callbacks.progress_bar import RichProgressBar

if TYPE_CHECKING:
    from kerastrainer.callbacks.base import Callback
    from kerastrainer.flags import TrainerFlags
    from kerastrainer.loggers.base import Logger
    from kerastrainer.module import TrainModule
    from kerastrainer.loop_position import LoopPosition
    from kerastrainer.results import Results


class FlagView:
    """A read-only attribute of the Trainer that reads the flag of its name in ``trainer.flags``
    (Lightning's ``trainer.max_epochs``); assigning to it is an error, not a silent no-op."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.flags, self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(
            f"`trainer.{self.name}` is a flag, fixed when the Trainer is built: pass "
            f"kt.Trainer({self.name}=...) instead. Received: trainer.{self.name}={value!r}")


class TrainerViews:
    """Properties of `kerastrainer.Trainer` (see there)."""

    # The flags that name no run-time object of their own (``strategy``, ``callbacks``, ``logger``,
    # ``profiler`` and ``accumulate_grad_batches`` are the Trainer's attributes), each read from
    # ``trainer.flags``.
    max_epochs = FlagView()
    min_epochs = FlagView()
    max_steps = FlagView()
    max_time = FlagView()
    limit_train_batches = FlagView()
    limit_val_batches = FlagView()
    limit_test_batches = FlagView()
    limit_predict_batches = FlagView()
    val_check_interval = FlagView()
    check_val_every_n_epoch = FlagView()
    num_sanity_val_steps = FlagView()
    fast_dev_run = FlagView()
    overfit_batches = FlagView()
    steps_per_execution = FlagView()
    jit_compile = FlagView()
    run_eagerly = FlagView()
    deterministic = FlagView()
    gradient_clip_val = FlagView()
    gradient_clip_algorithm = FlagView()
    detect_anomaly = FlagView()
    precision = FlagView()
    log_every_n_steps = FlagView()
    enable_progress_bar = FlagView()
    enable_checkpointing = FlagView()
    async_checkpointing = FlagView()
    save_input_state = FlagView()
    enable_model_summary = FlagView()
    default_root_dir = FlagView()

    flags: TrainerFlags

    results: Results
    position: LoopPosition
    loggers: list[Logger]
    callbacks: list[Callback]
    module: TrainModule | None
    accumulate_grad_batches: int
    is_global_zero: bool

    @property
    def callback_metrics(self) -> dict[str, float]:
        """Every value of the run as Python floats (read from the device when stale)."""
        return self.results.callback_metrics()

    @property
    def logged_metrics(self) -> dict[str, float]:
        """What the loggers get: `callback_metrics` less the ``logger=False`` values."""
        return self.results.logged_metrics()

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """Losses, metrics and the values logged with ``prog_bar=True``."""
        return self.results.progress_bar_metrics()

    @property
    def current_epoch(self) -> int:
        """The current (or last finished) epoch, from 0."""
        return self.position.epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps taken in this fit (not batches)."""
        return self.position.global_step

    @property
    def history(self) -> dict[str, list]:
        """One list per logged value, one entry per epoch (Keras's ``History``)."""
        return self.position.history

    @property
    def log_dir(self) -> str:
        """This run's folder: the first logger's ``version_N``, else ``default_root_dir``."""
        return self.loggers[0].log_dir if self.loggers else str(self.flags.default_root_dir)

    @property
    def checkpoint_callbacks(self) -> list[ModelCheckpoint]:
        """Every `ModelCheckpoint` of the run (the default one too), in order."""
        return [c for c in self.callbacks if isinstance(c, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        """The first `ModelCheckpoint`, or ``None``."""
        return next(iter(self.checkpoint_callbacks), None)

    @property
    def early_stopping_callbacks(self) -> list[EarlyStopping]:
        """Every `EarlyStopping` of the run, in order."""
        return [c for c in self.callbacks if isinstance(c, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> EarlyStopping | None:
        """The first `EarlyStopping`, or ``None``."""
        return next(iter(self.early_stopping_callbacks), None)

    @property
    def progress_bar_callback(self) -> RichProgressBar | None:
        """The progress bar (``None`` when disabled, or on a worker other than the chief)."""
        return next((c for c in self.callbacks if isinstance(c, RichProgressBar)), None)

    @property
    def optimizers(self) -> list[Any]:
        """The module's optimizers (one, or each of a manual optimization's), once configured."""
        optimizer = getattr(self.module, "optimizer", None)
        if optimizer is None:
            return []
        return list(optimizer.values()) if isinstance(optimizer, dict) else [optimizer]

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the chief only (one line per job, not one per worker), as Lightning's."""
        if self.is_global_zero:
            print(*args, **kwargs)
