"""The Trainer's read-only views of its run: metrics, progress and the run folder, typed.

A base class of `kerastrainer.Trainer`; each view reads an owner the Trainer holds (`Results`,
`Progress`, the loggers) and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerastrainer.callbacks.early_stopping import EarlyStopping
from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
from kerastrainer.callbacks.progress import RichProgressBar
from kerastrainer.fit_loop import planned_steps

if TYPE_CHECKING:
    from kerastrainer.callbacks.base import Callback
    from kerastrainer.loggers.base import Logger
    from kerastrainer.module import TrainModule
    from kerastrainer.progress import Progress
    from kerastrainer.results import Results


class TrainerViews:
    """Properties of `kerastrainer.Trainer` (see there)."""

    results: Results
    progress: Progress
    loggers: list[Logger]
    callbacks: list[Callback]
    module: TrainModule | None
    default_root_dir: str | None
    max_epochs: int | None
    max_steps: int
    accumulate_grad_batches: int
    num_training_batches: int | None
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
        return self.progress.epoch

    @property
    def global_step(self) -> int:
        """Optimizer steps taken in this fit (not batches)."""
        return self.progress.global_step

    @property
    def history(self) -> dict[str, list]:
        """One list per logged value, one entry per epoch (Keras's ``History``)."""
        return self.progress.history

    @property
    def log_dir(self) -> str:
        """This run's folder: the first logger's ``version_N``, else ``default_root_dir``."""
        return self.loggers[0].log_dir if self.loggers else str(self.default_root_dir)

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
        return planned_steps(self.num_training_batches, max_epochs=self.max_epochs or 0,
                             max_steps=self.max_steps, accumulate=self.accumulate_grad_batches)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the chief only (one line per job, not one per worker), as Lightning's."""
        if self.is_global_zero:
            print(*args, **kwargs)
