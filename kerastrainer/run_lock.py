"""One writer per run folder: a lock file held for the whole of a fit.

Two fits writing one run folder (two resumes of one ``last.ckpt``, or a resume while the original
still trains) would interleave their CSV rows and overwrite each other's checkpoints. The first
fit creates ``.kerastrainer.lock`` in the folder (``O_EXCL``: one of two racing processes wins),
holding its host and pid; a second is refused with the holder's name. A lock whose process is gone
(a killed fit on this host) is taken over; another host's is never second-guessed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from kerastrainer.checkpoint_io import process_alive

#: The lock's file name inside the run folder.
LOCK_NAME = ".kerastrainer.lock"
#: A lock file that cannot be read yet may be one being written: it is stale after this long.
UNREADABLE_GRACE_SECONDS = 5.0


def _holder(path: str) -> dict | None:
    """The ``{"host", "pid"}`` a lock file holds, or ``None`` when it cannot be read (yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            held = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(held, dict) or not isinstance(held.get("pid"), int):
        return None
    return held


class RunLock:
    """The exclusive lock of one run folder.

    Args:
        folder: the run folder (a logger's ``version_N``, or a checkpoint folder).

    Example:
        >>> lock = RunLock(folder="runs/version_0")  # doctest: +SKIP
        >>> lock.acquire()  # doctest: +SKIP
        >>> lock.release()  # doctest: +SKIP
    """

    def __init__(self, *, folder: str) -> None:
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.held = False
        self._mine = {"host": socket.gethostname(), "pid": os.getpid()}

    def _stale(self, holder: dict | None) -> bool:
        if holder is None:  # unreadable: being written now, or left half-written by a crash
            with contextlib.suppress(FileNotFoundError):
                return time.time() - os.path.getmtime(self.path) > UNREADABLE_GRACE_SECONDS
            return True
        if holder.get("host") != self._mine["host"]:
            return False  # another host's process cannot be checked from here
        return holder["pid"] == self._mine["pid"] or not process_alive(holder["pid"])

    def acquire(self) -> None:
        """Takes the lock (taking over a stale one).

        Raises:
            RuntimeError: another live fit holds it; the message names its host and pid.
        """
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(100):  # each round either takes the lock, removes a stale one or waits
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _holder(self.path)
                if not self._stale(holder):
                    if holder is not None:
                        self._refuse(holder)
                    time.sleep(0.1)  # being written: read it again
                    continue
                self._take_over(holder)
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                json.dump(self._mine, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return
        self._refuse(_holder(self.path) or {"host": "?", "pid": "?"})

    def _take_over(self, holder: dict | None) -> None:
        """Moves a stale lock aside and deletes it. Another process may have taken it over first
        and made a fresh one; what was moved aside is then put back (``os.link`` fails if a third
        lock exists), so a live lock is never deleted."""
        aside = f"{self.path}.stale-{self._mine['pid']}-{time.monotonic_ns()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process took it over: try again
        if _holder(aside) != holder:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.remove(aside)

    def _refuse(self, holder: dict) -> None:
        raise RuntimeError(
            f"Another fit writes to the run folder {self.folder!r}: its lock {self.path!r} is held by "
            f"pid {holder.get('pid')} on host {holder.get('host')!r}. Two fits in one run folder "
            "would mix their logs and overwrite each other's checkpoints. Wait for it to end, or "
            "train into another folder (another logger version or default_root_dir); if that "
            "process is gone (on another host), delete the lock file.")

    def release(self) -> None:
        """Gives the lock back (removes the file, if it is still this process's)."""
        if not self.held:
            return
        self.held = False
        if _holder(self.path) == self._mine:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
