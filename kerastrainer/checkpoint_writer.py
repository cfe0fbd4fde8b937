"""CheckpointWriter: checkpoint files written on a background thread while training goes on.

The loop snapshots the state into host memory (``build_checkpoint``: NumPy copies and plain
Python), hands it over and goes on; the file is written (temp file, fsync, rename) on one
background thread. At most one write is in flight: the next save waits for it first, and so does
the end of every run. A failed write is raised by that next save or at the end, never lost.
"""

from __future__ import annotations

from typing import Any, Callable

import concurrent.futures
import threading
import time


class CheckpointWriter:
    """Runs checkpoint writes, and what must follow them, in order on one background thread.

    Args:
        background: ``False`` runs everything at once in the caller's thread (``Trainer(
            async_checkpointing=False)``).

    Example:
        >>> writer = CheckpointWriter(background=True)
        >>> writer.write(save_file, "last.ckpt", tree)  # doctest: +SKIP
        >>> writer.after_pending(lambda: os.remove("epoch=0.ckpt"))  # doctest: +SKIP
        >>> writer.wait()  # doctest: +SKIP
    """

    def __init__(self, *, background: bool) -> None:
        self.background = background
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[concurrent.futures.Future] = []
        self._failed: BaseException | None = None
        self._lock = threading.Lock()
        self.last_write_s = 0.0  # how long the last background write took

    def write(self, save: Callable[..., Any], *args: Any) -> None:
        """Runs ``save(*args)`` (a file write) in the background, after the previous write and
        its follow-ups finished; a failure of those is raised here.

        Raises:
            OSError, TypeError: the previous write failed (raised here, once).
        """
        self.wait()
        if self.background:
            self._submit(self._timed, save, *args)
        else:
            save(*args)

    def after_pending(self, action: Callable[[], Any]) -> None:
        """Runs ``action`` once the writes queued so far are in place (at once when none is
        pending); skipped when one of them failed. ModelCheckpoint deletes the files that left
        its top k this way, so an older file is only removed once its successor exists."""
        self._submit(action)

    def wait(self) -> None:
        """Blocks until every queued write and follow-up ran.

        Raises:
            OSError, TypeError: what the first failed one raised (once).
        """
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()  # waits; the error is kept in self._failed
        with self._lock:
            failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def close(self) -> None:
        """Waits, then stops the thread (a new write starts a new one).

        Raises:
            OSError, TypeError: a pending write failed.
        """
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _submit(self, fn, *args) -> None:
        if not self.background:
            fn(*args)
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="kt-checkpoint-writer")
        self._pending.append(self._executor.submit(self._guarded, fn, *args))

    def _timed(self, fn, *args) -> None:
        started = time.monotonic()
        fn(*args)
        self.last_write_s = time.monotonic() - started

    def _guarded(self, fn, *args) -> None:
        with self._lock:
            if self._failed is not None:
                return  # an earlier write failed: nothing after it runs
        try:
            fn(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the loop's thread by wait()
            with self._lock:
                self._failed = error
