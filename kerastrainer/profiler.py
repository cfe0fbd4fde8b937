"""Profilers: where the time of a run goes (hooks, compiled calls, validation, checkpoints, logging)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections import defaultdict

from rich.console import Console
from rich.table import Table

_NULL = contextlib.nullcontext()


class PassThroughProfiler:
    """The disabled profiler, and the base class of profilers: every method is a no-op.

    ``profile()`` returns one shared no-op context; nothing is recorded.
    """

    enabled = False

    def profile(self, action: str):
        """A context manager timing ``action``."""
        return _NULL

    def start(self, *, log_dir: str) -> None:
        """Called when fit starts training, with the run's folder."""

    def after_optimizer_steps(self, global_step: int) -> None:
        """Called by the loop after each compiled training call that took optimizer steps, with
        the ``global_step`` reached."""

    def stop(self) -> None:
        """Called when fit ends: stop any trace still running."""

    def describe(self, *, log_dir: str, chief: bool) -> None:
        """Reports what was recorded into the run's ``log_dir`` (called when fit ends; ``chief``:
        this process is the one that prints and writes files)."""


class SimpleProfiler(PassThroughProfiler):
    """Records the wall time of every profiled action; prints a table and writes it at fit end.

    Actions: ``[hook] <Class>.<hook>`` for every callback/module hook, ``train: compiled call``
    (training steps including the input pipeline, which runs inside the compiled call),
    ``validation run``, ``checkpoint save``, ``logger write``, and ``fit`` itself.

    Args:
        filename: the report's file name in the run folder (``.txt`` and ``.json`` are written).

    Examples:
        >>> trainer = Trainer(profiler="simple")  # doctest: +SKIP
    """

    enabled = True

    def __init__(self, *, filename: str = "profile") -> None:
        self.filename = filename
        self.records: dict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def profile(self, action: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.records[action].append(time.perf_counter() - start)

    def summary(self) -> dict:
        """``{action: {"calls", "total_s", "mean_ms"}}``, slowest first."""
        rows = {name: {"calls": len(times), "total_s": sum(times),
                       "mean_ms": 1000 * sum(times) / len(times)}
                for name, times in self.records.items() if times}
        return dict(sorted(rows.items(), key=lambda item: -item[1]["total_s"]))

    def table(self) -> Table:
        rows = self.summary()
        total = rows.get("fit", {}).get("total_s") or sum(r["total_s"] for r in rows.values()) or 1.0
        table = Table(title="Profiler report")
        for column in ("Action", "Calls", "Total s", "Mean ms", "% of fit"):
            table.add_column(column, justify="left" if column == "Action" else "right")
        for name, row in rows.items():
            table.add_row(name, str(row["calls"]), f"{row['total_s']:.4f}", f"{row['mean_ms']:.3f}",
                          f"{100 * row['total_s'] / total:.1f}")
        return table

    def describe(self, *, log_dir: str, chief: bool) -> None:
        """Prints the table and writes ``profile.txt`` / ``profile.json`` into ``log_dir``."""
        from kerastrainer.checkpoint_io import atomic_write_text

        if not chief or not self.records:
            return
        Console().print(self.table())
        text = Console(width=120, record=True, file=io.StringIO())
        text.print(self.table())
        base = os.path.join(log_dir, self.filename)
        atomic_write_text(base + ".txt", text.export_text())
        atomic_write_text(base + ".json", json.dumps(self.summary(), indent=2))


class TFProfiler(SimpleProfiler):
    """A `SimpleProfiler` that also captures a ``tf.profiler`` trace of a window of steps.

    The trace goes to ``<log_dir>/tf_profile`` (open it with TensorBoard's profile plugin).

    Args:
        start_step: the global step at which tracing starts (after the first compile).
        num_steps: how many steps to trace.
    """

    def __init__(self, *, start_step: int = 2, num_steps: int = 5) -> None:
        super().__init__()
        self.start_step = start_step
        self.num_steps = num_steps
        self.trace_dir: str | None = None
        self._log_dir = "."
        self._active = False
        self._done = False

    def start(self, *, log_dir: str) -> None:
        """Remembers where the trace goes: ``<log_dir>/tf_profile``."""
        self._log_dir = log_dir

    def after_optimizer_steps(self, global_step: int) -> None:
        """Starts the trace at ``start_step`` and stops it ``num_steps`` later."""
        import tensorflow as tf

        step = global_step
        if not self._active and not self._done and step >= self.start_step:
            self.trace_dir = os.path.join(self._log_dir, "tf_profile")
            tf.profiler.experimental.start(self.trace_dir)
            self._active = True
            self._stop_at = step + self.num_steps
        elif self._active and step >= self._stop_at:
            self.stop()

    def stop(self) -> None:
        import tensorflow as tf

        if self._active:
            tf.profiler.experimental.stop()
            self._active, self._done = False, True


def make_profiler(value):
    """``None`` -> disabled, ``"simple"``, ``"tf"``, or a profiler instance."""
    if value is None:
        return PassThroughProfiler()
    if value == "simple":
        return SimpleProfiler()
    if value == "tf":
        return TFProfiler()
    if isinstance(value, PassThroughProfiler):
        return value
    raise ValueError(
        "`profiler` must be None, 'simple', 'tf' or a kerastrainer.profiler.SimpleProfiler. "
        f"Received: profiler={value!r}")
