"""The live bar's layout: one line per bar in a wide terminal; in a narrow one (80 columns) the
bar line keeps epoch, batches, speed and ETA, and the metrics go to the line below."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

WIDE = 120  # columns from which the metrics fit on the bar's own line


class SpeedColumn(ProgressColumn):
    """Batches per second over the bar's run so far (compiled calls of many batches update the
    bar rarely: an average over its elapsed time holds, where rich's windowed speed has no
    samples yet)."""

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("")
        return Text(f"{task.completed / elapsed:.1f} it/s")


class MetricsBelow(Progress):
    """A Progress that draws each task's ``metrics`` field on the line under its bar."""

    def get_renderables(self):
        for task in self.tasks:
            yield self.make_tasks_table([task])
            metrics = task.fields.get("metrics")
            if metrics:
                yield Text(f"  {metrics}", overflow="fold")


def make_progress(console: Console) -> Progress:
    """The Progress for ``console``'s width (decided when a bar starts)."""
    narrow = console.width < WIDE
    columns = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=20 if narrow else 40),
               MofNCompleteColumn(), SpeedColumn(), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn()]
    if narrow:
        return MetricsBelow(*columns, console=console, transient=False)
    return Progress(*columns, TextColumn("{task.fields[metrics]}"), console=console, transient=False)
