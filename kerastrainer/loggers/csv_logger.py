"""CSVLogger: metrics.csv with one row per logged step, growing columns, rewritten atomically."""

from __future__ import annotations

import csv
import io
import os

from kerastrainer.checkpoint_io import atomic_write_text
from kerastrainer.loggers.base import Logger


class CSVLogger(Logger):
    """Writes ``<save_dir>/<name>/version_N/metrics.csv``.

    Every call of ``log_metrics`` is one row (``step`` first; epoch rows also carry ``epoch``).
    When a new key appears the file gains a column: the whole file is rewritten to a temp file and
    renamed, so a crash never leaves it half-written. On resume, rows after the resumed step are
    dropped, so no step appears twice.

    Args:
        save_dir: the parent folder (default: the Trainer's ``default_root_dir``).
        name: the experiment folder name.
        version: the run version (default: the next free one).
        flush_every_n_rows: rewrite the file after this many new rows (and at every epoch end).

    Attributes:
        rows: every row logged so far (dicts).

    Examples:
        >>> logger = CSVLogger("runs", name="digits")
    """

    FILE_NAME = "metrics.csv"

    def __init__(self, save_dir=None, *, name: str = "kt_logs", version=None,
                 flush_every_n_rows: int = 100) -> None:
        super().__init__(save_dir, name=name, version=version)
        self.flush_every_n_rows = flush_every_n_rows
        self.rows: list[dict] = []
        self._unsaved = 0
        self._loaded = False

    @property
    def path(self) -> str:
        return os.path.join(self.log_dir, self.FILE_NAME)

    def _load_existing(self) -> None:
        # An existing file belongs to the same version, i.e. a resumed run: keep appending to it.
        if not self._loaded:
            self._loaded = True
            if os.path.exists(self.path):
                with open(self.path, newline="") as handle:
                    self.rows = [{k: _number(v) for k, v in row.items() if v != ""}
                                 for row in csv.DictReader(handle)] + self.rows

    def log_metrics(self, metrics: dict, step: int) -> None:
        self._load_existing()
        self.rows.append({"step": step, **metrics})
        self._unsaved += 1
        if self._unsaved >= self.flush_every_n_rows:
            self.save()

    def resume(self, step: int) -> None:
        self._load_existing()
        self.rows = [row for row in self.rows if row["step"] <= step]
        self.save()

    def save(self) -> None:
        self._load_existing()
        columns: list[str] = []
        for row in self.rows:
            columns += [key for key in row if key not in columns]
        ordered = [c for c in ("epoch", "step") if c in columns] + sorted(
            c for c in columns if c not in ("epoch", "step"))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=ordered, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())
        self._unsaved = 0


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
