"""Validation of Trainer flags: each bad value names the flag, shows what was received, says the fix."""

from __future__ import annotations

import datetime
import numbers


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def int_at_least(name: str, value, minimum: int, meaning: str = "") -> int:
    """Checks an integer flag with a lower bound."""
    hint = f" ({meaning})" if meaning else ""
    if not _is_int(value):
        raise TypeError(f"`{name}` must be an integer >= {minimum}{hint}. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{hint}. Received: {name}={value!r}")
    return int(value)


def optional_int(name: str, value, minimum: int, meaning: str = "") -> int | None:
    return None if value is None else int_at_least(name, value, minimum, meaning)


def batches_or_fraction(name: str, value) -> int | float:
    """An int >= 0 (a number of batches) or a float in [0, 1] (a fraction of the data)."""
    if _is_int(value):
        if value < 0:
            raise ValueError(
                f"`{name}` must be an int >= 0 (batches) or a float in [0, 1] (fraction). "
                f"Received: {name}={value!r}"
            )
        return int(value)
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"`{name}` must be an int >= 0 (batches) or a float in [0, 1] (fraction). "
                f"Received: {name}={value!r}"
            )
        return value
    raise TypeError(
        f"`{name}` must be an int >= 0 (batches) or a float in [0, 1] (fraction). "
        f"Received: {name}={value!r}"
    )


def val_check_interval(value) -> int | float:
    """An int >= 1 (every N training batches) or a float in (0, 1] (fraction of an epoch)."""
    if _is_int(value) and value >= 1:
        return int(value)
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return value
    error = TypeError if not isinstance(value, (int, float)) or isinstance(value, bool) else ValueError
    raise error(
        "`val_check_interval` must be an int >= 1 (every N training batches) or a float in (0, 1] "
        f"(fraction of an epoch). Received: val_check_interval={value!r}"
    )


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def boolean_or_auto(name: str, value):
    if value == "auto":
        return value
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True, False or 'auto'. Received: {name}={value!r}")
    return value


def fast_dev_run(value) -> int:
    """``True`` means 1 batch, an int n means n batches, ``False``/0 is off."""
    if isinstance(value, bool):
        return int(value)
    return int_at_least("fast_dev_run", value, 0, "True, False or a number of batches")


def max_time(value) -> float | None:
    """Seconds, a ``timedelta``, a dict of ``timedelta`` fields, or ``"DD:HH:MM:SS"``."""
    if value is None:
        return None
    fix = ("`max_time` must be seconds (a positive number), a datetime.timedelta, a dict such as "
           "{'hours': 1}, or a 'DD:HH:MM:SS' string.")
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, numbers.Real):
            seconds = float(value)
        elif isinstance(value, datetime.timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, dict):
            seconds = datetime.timedelta(**value).total_seconds()
        elif isinstance(value, str):
            days, hours, minutes, secs = (int(part) for part in value.split(":"))
            seconds = datetime.timedelta(days=days, hours=hours, minutes=minutes,
                                         seconds=secs).total_seconds()
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise (ValueError if isinstance(value, (str, dict)) else TypeError)(
            f"{fix} Received: max_time={value!r}"
        ) from None
    if seconds <= 0:
        raise ValueError(f"{fix} Received: max_time={value!r}")
    return seconds


def clip_value(value) -> float | None:
    """``None`` or a positive number (``gradient_clip_val``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`gradient_clip_val` must be a positive number or None. "
                        f"Received: gradient_clip_val={value!r}")
    if value <= 0:
        raise ValueError(f"`gradient_clip_val` must be a positive number or None. "
                         f"Received: gradient_clip_val={value!r}")
    return float(value)
