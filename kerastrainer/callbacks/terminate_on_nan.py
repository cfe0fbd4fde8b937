"""TerminateOnNaN: stop at the first non-finite loss or gradient, checked on the device."""

from __future__ import annotations

from kerastrainer.callbacks.base import Callback


class TerminateOnNaN(Callback):
    """Turns on what ``Trainer(detect_anomaly=True)`` does for the runs it is in: the compiled step
    checks the loss and gradients and the run stops with an error naming the global step and the
    value that was not finite.

    The checks run inside the compiled step; nothing is copied to the host per step.

    Examples:
        >>> callback = TerminateOnNaN()
    """

    checks_finite = True
