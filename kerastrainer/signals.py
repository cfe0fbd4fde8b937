"""Graceful SIGTERM/SIGINT: the first signal is recorded; the loop saves and exits at a step boundary."""

from __future__ import annotations

import signal
import threading

#: Exit status after a graceful stop: 128 + the signal number, as shells report it.
EXIT_CODES = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}


class SignalCatcher:
    """Context manager installed around ``fit`` (main thread only).

    The first SIGTERM or SIGINT sets `received` and puts the previous handler back, so a second
    signal acts as it normally would (for example Ctrl-C twice interrupts at once).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "SignalCatcher":
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum
        signal.signal(signum, self._previous[signum])

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
