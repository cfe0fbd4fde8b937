"""The names ``self.log`` values are reported under: used as given (Lightning's rule), so a name
must not take a key something else reports, or one value would replace the other silently."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from kerastrainer.refusals import refusal


def is_text(value) -> bool:
    """Whether ``value`` is a string or a string array/tensor (which ``self.log`` refuses)."""
    if isinstance(value, (str, bytes)):
        return True
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, tf.dtypes.DType):
        return dtype == tf.string
    return isinstance(dtype, np.dtype) and dtype.kind in "USO"


def taken_by(states, hook_values, state, key: str) -> str | None:
    """What already reports ``key`` besides ``state``'s own ``self.log`` values (``states``: every
    stage's ``StageState``; ``hook_values``: the values hooks logged), or ``None``."""
    for other in states:
        loss_key = other.stage.prefix + "loss" + other.stage.suffix
        if other.has_loss and key == loss_key or key in other.builtin_keys() - {loss_key}:
            return f"the built-in `{key}` of the {other.stage.name} stage"
        if other is not state and key in other.logged_keys():
            return f"self.log({key!r}) in {other.stage.step}"
    if state is not None and key in hook_values:
        return f"self.log({key!r}) in a hook"
    return None


def check_names(states, hook_values, state=None, keys=()) -> None:
    """Checks the keys of ``state``'s ``self.log`` values once its step was traced, or ``keys``
    logged from a hook, against everything else reported.

    Raises:
        ValueError: naming the key, both sources and a free name.
    """
    states = list(states)
    where = state.stage.step if state is not None else "a hook"
    for key in sorted(state.logged_keys()) if state is not None else keys:
        taken = taken_by(states, hook_values, state, key)
        if taken is not None:
            raise refusal(ValueError(
                f"self.log({key!r}) in {where} would replace {taken} (or be replaced by it). "
                f"Log it under a name of its own, e.g. 'my_{key}', or 'val_{key}' in "
                "validation_step (names are used as given)."))


@dataclass
class LogKeys:
    """The keys ``self.log`` calls report under, sorted by what they asked for.

    Attributes:
        user: every logged key (the bar shows losses and metrics, and of these only ``prog_bar``).
        prog_bar: the keys logged with ``prog_bar=True``.
        hidden: the keys logged with ``logger=False``.
    """

    user: set = field(default_factory=set)
    prog_bar: set = field(default_factory=set)
    hidden: set = field(default_factory=set)

    def remember(self, keys, *, suffix: str = "", prog_bar: bool, logger: bool) -> None:
        """Adds ``keys`` (each with ``suffix``: one of several datasets') logged with these options."""
        for key in (key + suffix for key in keys):
            self.user.add(key)
            if prog_bar:
                self.prog_bar.add(key)
            if not logger:
                self.hidden.add(key)
