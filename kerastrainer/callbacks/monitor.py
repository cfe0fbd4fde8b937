"""Reading the monitored value shared by callbacks that act on logged metrics."""

from __future__ import annotations

import math


def monitored_value(metrics: dict, monitor: str, owner: str, *, validates: bool) -> float | None:
    """Returns ``metrics[monitor]`` (a trainer's ``callback_metrics``).

    Returns ``None`` when the key is a validation value, the fit ``validates`` and no validation
    ran this epoch (for example with ``check_val_every_n_epoch > 1``).

    Raises:
        ValueError: the key is never logged; the message lists the keys that exist (Lightning's
            ``strict=True``).
    """
    if monitor in metrics:
        return float(metrics[monitor])
    if monitor.startswith("val_") and validates and not any(
            k.startswith("val_") for k in metrics):
        return None
    available = ", ".join(sorted(metrics)) or "(nothing logged)"
    raise ValueError(
        f"{owner}(monitor={monitor!r}) could not find {monitor!r} in the logged metrics. Available: "
        f"{available}. Pass one of these as monitor=..., or log it with self.log({monitor!r}, value)."
    )


def improved(current: float, best: float, mode: str, min_delta: float) -> bool:
    """True when ``current`` beats ``best`` by more than ``min_delta`` in the direction of ``mode``."""
    if math.isnan(current):
        return False
    if mode == "min":
        return current < best - min_delta
    return current > best + min_delta


def check_mode(mode: str, owner: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"{owner}: `mode` must be 'min' or 'max'. Received: mode={mode!r}")
    return mode
