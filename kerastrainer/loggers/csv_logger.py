"""CSVLogger: metrics.csv with one row per logged step; rows appended, columns grown atomically."""

from __future__ import annotations

import csv
import io
import os

from kerastrainer.checkpoint_io import atomic_write_text
from kerastrainer.loggers.base import Logger


class CSVLogger(Logger):
    """Writes ``<save_dir>/<name>/version_N/metrics.csv``.

    Every call of ``log_metrics`` is one row (``step`` first; epoch rows also carry ``epoch``).
    Rows are buffered and appended to the file every ``flush_every_n_rows`` rows and at every epoch
    end, so the cost of a flush does not grow with the run. When a new key appears the file gains
    a column: the whole file is rewritten to a temp file and renamed, so a crash never leaves it
    half-written (a crash during an append can cut the last row short; it is dropped when the file
    is next read). On resume, rows after the resumed step are dropped, so no step appears twice.

    Args:
        save_dir: the parent folder (default: the Trainer's ``default_root_dir``).
        name: the experiment folder name.
        version: the run version (default: the next free one).
        flush_every_n_rows: write buffered rows after this many (and at every epoch end).

    Examples:
        >>> logger = CSVLogger("runs", name="digits")
    """

    FILE_NAME = "metrics.csv"

    def __init__(self, save_dir: str | os.PathLike | None = None, *, name: str = "kt_logs",
                 version: int | str | None = None, flush_every_n_rows: int = 100) -> None:
        super().__init__(save_dir, name=name, version=version)
        self.flush_every_n_rows = flush_every_n_rows
        self._pending: list[dict] = []
        self._columns: list[str] | None = None  # the file's header; None: not read yet

    @property
    def path(self) -> str:
        return os.path.join(self.log_dir, self.FILE_NAME)

    @property
    def rows(self) -> list[dict]:
        """Every row logged so far: those in the file (read back), then the buffered ones."""
        return self._read() + [dict(row) for row in self._pending]

    def log_metrics(self, metrics: dict, step: int) -> None:
        self._pending.append({"step": step, **metrics})
        if len(self._pending) >= self.flush_every_n_rows:
            self.save()

    def resume(self, step: int) -> None:
        kept = [row for row in self.rows if row["step"] <= step]
        self._pending = []
        self._rewrite(kept)

    def save(self) -> None:
        columns = self._file_columns()
        if not self._pending:
            return
        new = [key for row in self._pending for key in row if key not in columns]
        if not os.path.exists(self.path) or new:
            self._rewrite(self._read() + self._pending)
        else:
            self._append(self._pending, columns)
        self._pending = []

    def _file_columns(self) -> list[str]:
        """The header of the file (read once); a row cut short by a crash is dropped first."""
        if self._columns is None:
            self._columns = []
            if os.path.exists(self.path):
                with open(self.path, newline="") as handle:
                    text = handle.read()
                self._columns = next(csv.reader(io.StringIO(text)), [])
                if text and not text.endswith("\n"):
                    self._rewrite(self._read())
        return self._columns

    def _read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as handle:
            text = handle.read()
        if not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]  # a last row an interrupted append cut short
        return [{k: _number(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(io.StringIO(text))]

    def _rewrite(self, rows: list[dict]) -> None:
        columns: list[str] = []
        for row in rows:
            columns += [key for key in row if key not in columns]
        ordered = [c for c in ("epoch", "step") if c in columns] + sorted(
            c for c in columns if c not in ("epoch", "step"))
        atomic_write_text(self.path, _format(rows, ordered, header=True))
        self._columns = ordered

    def _append(self, rows: list[dict], columns: list[str]) -> None:
        text = _format(rows, columns, header=False)
        try:
            with open(self.path, "a", newline="") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:
            raise OSError(error.errno, f"Could not append rows to {self.path!r}: {error.strerror}. "
                          "The rows written before are intact.") from error


def _format(rows: list[dict], columns: list[str], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
