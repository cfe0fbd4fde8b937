"""The Trainer's read-only views of its run: metrics, progress and the run folder, typed.

A base class of `kerastrainer.Trainer`; each view reads an owner the Trainer holds (`Results`,
`Progress`, the loggers) and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kerastrainer.loggers.base import Logger
    from kerastrainer.progress import Progress
    from kerastrainer.results import Results


class TrainerViews:
    """Properties of `kerastrainer.Trainer` (see there)."""

    results: Results
    progress: Progress
    loggers: list[Logger]
    default_root_dir: str | None

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
