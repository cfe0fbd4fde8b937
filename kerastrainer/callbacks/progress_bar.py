"""RichProgressBar: a live bar in a terminal, one line per epoch in a log file."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import importlib.util
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.progress_bar_layout import make_progress
from kerastrainer.stages import VAL

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


def widgets_available() -> bool:
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):
        return False


def format_metrics(metrics: dict) -> str:
    return " ".join(f"{k}: {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def format_duration(seconds: float) -> str:
    """Writes a duration as a person reads it: ``45ms``, ``3.2s``, ``2m05s``, ``1h02m``."""
    # A small model's epoch takes milliseconds; "0.0s" told users nothing (issue 33).
    if seconds < 1.0:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60.0:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_step_time(seconds: float, steps: int) -> str:
    """Writes the time per step as Keras does (``3ms/step``), or ``""`` when no step ran."""
    if steps <= 0:
        return ""
    per_step = seconds / steps
    if per_step < 1.0:
        return f"{per_step * 1000:.0f}ms/step"
    return f"{per_step:.1f}s/step"


class RichProgressBar(Callback):
    """Shows epoch, step, ETA and the progress-bar metrics; prints result tables after evaluation.

    In a terminal it draws a live ``rich`` bar per epoch (kept on screen, like Keras): epoch,
    batches, batches per second, elapsed time, ETA and the metrics; below 120 columns the metrics
    go to a second line, so an 80-column terminal shows all of it. In a Jupyter notebook it draws
    the same bars into an output widget (with ``ipywidgets``: ``pip install kerastrainer[notebook]``).
    Otherwise (a pipe, a log file, CI, a notebook without ipywidgets) it prints one plain line per
    epoch and never one line per step. Metrics are read from the
    device at most every ``refresh_rate`` seconds, and at epoch ends.

    Args:
        refresh_rate: seconds between two metric reads while an epoch runs (a time, where
            Lightning's ``refresh_rate`` counts batches: reading is what costs, so time bounds it).
        console: a ``rich.console.Console`` (default: standard output).

    Examples:
        >>> bar = RichProgressBar(refresh_rate=1.0)
    """

    chunk_aware = True  # draws the batch count it is given, whatever the chunk

    def __init__(self, *, refresh_rate: float = 0.5, console: Console | None = None) -> None:
        if not isinstance(refresh_rate, (int, float)) or refresh_rate < 0:
            raise ValueError(
                f"RichProgressBar: `refresh_rate` must be seconds >= 0. Received: refresh_rate={refresh_rate!r}"
            )
        self.refresh_rate = float(refresh_rate)
        self.console = console
        self._progress: Any = None  # a rich Progress while a bar is live
        self._task: Any = None  # rich's TaskID of the running bar
        self._eval_task = None
        self._eval_totals, self._eval_label, self._eval_dataset = None, "", 0  # see _eval_start
        self._last_read = 0.0
        self._epoch_start = 0.0
        self._completed = 0
        self._epoch_first_batch = 0
        self._epoch = None
        self._hinted = False

    @property
    def is_live(self) -> bool:
        """A terminal, or a notebook with ipywidgets (rich draws the bar into an output widget)."""
        console = self._console()
        if console.is_terminal:
            return True
        if not console.is_jupyter:
            return False
        if not widgets_available():
            if not self._hinted:  # once: the plain lines below still show every epoch
                self._hinted = True
                console.print("(A live progress bar in notebooks needs ipywidgets: "
                              "pip install kerastrainer[notebook])", highlight=False, markup=False)
            return False
        return True

    def _console(self) -> Console:
        if self.console is None:
            self.console = Console()
        return self.console

    def _start(self) -> Progress:
        if self._progress is None:
            self._progress = make_progress(self._console())  # its width decides the layout
            self._progress.start()
        return self._progress

    def _stop(self) -> None:
        if self._progress is not None:
            # rich's stop() skips its last refresh in Jupyter: the widget would keep an older
            # frame (an epoch without its metrics, an evaluation at 0/N). Draw the final one.
            self._progress.refresh()
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._new_epoch(trainer, completed=0)

    def _new_epoch(self, trainer, completed):
        self._epoch_start = self._last_read = time.monotonic()
        self._completed = completed
        self._epoch_first_batch = completed  # an epoch resumed mid-way times only its own steps
        self._epoch = trainer.current_epoch
        if not self.is_live:
            return
        total_epochs = f"/{trainer.max_epochs}" if trainer.max_epochs >= 0 else ""
        self._task = self._start().add_task(f"Epoch {trainer.current_epoch + 1}{total_epochs}",
                                            total=trainer.num_training_batches, metrics="",
                                            completed=completed)

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        if self._epoch != trainer.current_epoch:  # an epoch resumed from a checkpoint mid-way
            self._new_epoch(trainer, completed=batch_idx)
        self._completed = batch_idx + 1
        if not self.is_live:
            return
        fields: dict[str, Any] = {}
        now = time.monotonic()
        if now - self._last_read >= self.refresh_rate:  # the bar's own interval for a device read
            self._last_read = now
            fields["metrics"] = format_metrics(trainer.progress_bar_metrics)
        self._progress.update(self._task, completed=self._completed, **fields)

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        text = format_metrics(trainer.progress_bar_metrics)
        if self.is_live and self._task is not None:
            # Unknown-length epochs learn their total here; known ones are unchanged.
            self._progress.update(self._task, metrics=text, total=self._completed,
                                  completed=self._completed)
            return
        elapsed = time.monotonic() - self._epoch_start
        total_epochs = f"/{trainer.max_epochs}" if (trainer.max_epochs or 0) >= 0 else ""
        parts = [f"Epoch {trainer.current_epoch + 1}{total_epochs}", format_duration(elapsed)]
        step_time = format_step_time(elapsed, self._completed - self._epoch_first_batch)
        if step_time:
            parts.append(step_time)
        if text:
            parts.append(text)
        self._console().print(" - ".join(parts), highlight=False, soft_wrap=True)

    def on_train_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._stop()

    # ------------------------------------------------------------------ evaluation
    def _eval_start(self, trainer, description, total):
        if self.is_live:  # several datasets: a count each, one after the other (Lightning's bar)
            self._eval_totals = total if isinstance(total, list) else None
            self._eval_label = description
            self._eval_dataset = 0
            label = f"{description} DataLoader 0" if self._eval_totals else description
            self._eval_task = self._start().add_task(
                label, total=self._eval_totals[0] if self._eval_totals else total, metrics="")

    def _eval_advance(self, batch_idx, dataloader_idx=None):
        if self._eval_task is None:
            return
        if self._eval_totals and dataloader_idx not in (None, self._eval_dataset):  # the next dataset
            self._eval_dataset = dataloader_idx
            self._progress.reset(self._eval_task, total=self._eval_totals[dataloader_idx],
                                 description=f"{self._eval_label} DataLoader {dataloader_idx}")
        self._progress.update(self._eval_task, completed=batch_idx + 1)

    def _eval_end(self, *, keep: bool = False):
        """Ends an evaluation's count: removed inside a fit (the epoch's bar stays), kept at its
        final count (5/5) by a run of its own, as Lightning leaves it."""
        if self._eval_task is not None and self._progress is not None and not keep:
            self._progress.remove_task(self._eval_task)
        self._eval_task = None

    def on_validation_start(self, trainer: Trainer, module: TrainModule) -> None:
        label = "Sanity check" if trainer.sanity_checking else "Validation"
        self._eval_start(trainer, label, trainer.num_val_batches)

    def on_validation_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                                batch_idx: int, dataloader_idx: int | None = None) -> None:
        self._eval_advance(batch_idx, dataloader_idx)

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._eval_end(keep=trainer.stage == VAL)
        if trainer.stage == VAL:
            self._stop()
            self._print_table(trainer, "Validate metric", "val_")

    def on_test_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._eval_start(trainer, "Testing", trainer.num_test_batches)

    def on_test_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                          batch_idx: int, dataloader_idx: int | None = None) -> None:
        self._eval_advance(batch_idx, dataloader_idx)

    def on_test_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._eval_end(keep=True)
        self._stop()
        self._print_table(trainer, "Test metric", "test_")

    def on_predict_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._eval_start(trainer, "Predicting", trainer.num_predict_batches)

    def on_predict_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                             batch_idx: int) -> None:
        self._eval_advance(batch_idx)

    def on_predict_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._eval_end(keep=True)
        self._stop()

    def teardown(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        self._stop()

    def _print_table(self, trainer, title, prefix):
        logged = trainer.results.run_hook_values()  # by this run's hooks, not by training's
        rows = {k: v for k, v in trainer.callback_metrics.items()
                if isinstance(v, float) and (k.startswith(prefix) or k in logged)}
        if not rows:
            return
        table = Table(title=None)
        table.add_column(title, style="cyan")
        table.add_column("Value", justify="right")
        for key, value in rows.items():
            table.add_row(key, f"{value:.4f}")
        self._console().print(table)
