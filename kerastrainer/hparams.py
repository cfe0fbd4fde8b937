"""Hyperparameters: the arguments a module was built with, kept for checkpoints and logs."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import keras


class AttributeDict(dict):
    """A dict whose keys can also be read and written as attributes.

    Examples:
        >>> hp = AttributeDict(lr=0.1)
        >>> hp.lr, hp["lr"]
        (0.1, 0.1)
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(
                f"No hyperparameter named {key!r}. Saved hyperparameters: {sorted(self)}"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def collect_init_args(frame, names: tuple, ignore) -> dict:
    """Reads the arguments of the ``__init__`` call that owns ``frame``.

    Args:
        frame: the frame of the user's ``__init__`` (the caller of ``save_hyperparameters``).
        names: keep only these argument names (all when empty).
        ignore: argument names to drop.

    Returns:
        An ordered dict of argument name to value, ``*args`` under ``"args"`` and ``**kwargs`` merged.
    """
    code = frame.f_code
    local_vars = frame.f_locals
    count = code.co_argcount + code.co_kwonlyargcount
    arg_names = list(code.co_varnames[:count])
    values = {name: local_vars[name] for name in arg_names if name in local_vars}
    position = count
    if code.co_flags & inspect.CO_VARARGS:
        varargs = local_vars.get(code.co_varnames[position], ())
        if varargs:
            values["args"] = list(varargs)
        position += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        values.update(local_vars.get(code.co_varnames[position], {}))
    for skipped in ("self", "__class__"):
        values.pop(skipped, None)
    unknown = [n for n in names if n not in values]
    if unknown:
        raise ValueError(
            f"save_hyperparameters() got names that are not arguments of {code.co_name}: "
            f"{unknown}. Arguments are: {sorted(values)}. Received: {list(names)}"
        )
    if names:
        values = {n: values[n] for n in names}
    ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
    return {k: v for k, v in values.items() if k not in ignored}


def normalize_hparams(args: tuple, frame, ignore) -> AttributeDict:
    """Turns the arguments of ``save_hyperparameters`` into an ``AttributeDict``."""
    if len(args) == 1 and isinstance(args[0], Mapping):
        return AttributeDict(args[0])
    bad = [a for a in args if not isinstance(a, str)]
    if bad:
        raise TypeError(
            "save_hyperparameters() takes argument names as strings or one mapping of "
            f"hyperparameters. Received: {args!r}"
        )
    hparams = AttributeDict(collect_init_args(frame, args, ignore))
    for name, value in hparams.items():
        if isinstance(value, (keras.layers.Layer, keras.optimizers.Optimizer, keras.metrics.Metric,
                              keras.losses.Loss)):
            warnings.warn(
                f"save_hyperparameters(): argument {name!r} is a Keras {type(value).__name__}, which a "
                "checkpoint can only keep as its repr, so load_from_checkpoint could not rebuild the "
                f"module from it. Leave it out with self.save_hyperparameters(ignore=[{name!r}]) and "
                f"pass it again when loading: load_from_checkpoint(path, {name}=...).", stacklevel=3)
    return hparams
