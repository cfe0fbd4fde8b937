"""The Trainer's ``callbacks`` flag: a list in one form, Keras callbacks wrapped, defaults added."""

from __future__ import annotations

import weakref
from typing import Any

import keras

from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.keras_adapter import KerasCallbackAdapter
from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
from kerastrainer.callbacks.model_summary import ModelSummary
from kerastrainer.callbacks.progress_bar import RichProgressBar


def configure_callbacks(callbacks, *, chief: bool, progress_bar: bool, model_summary: bool,
                        checkpointing: bool) -> list:
    """Normalises the ``callbacks`` flag and adds the defaults the other flags ask for.

    Every ``keras.callbacks.Callback`` goes into one `KerasCallbackAdapter`, at the place of
    the first one. A progress bar and a model summary are added on the chief only (the other
    workers print nothing), a ``ModelCheckpoint`` on every worker (they take part in its saves).

    Raises:
        TypeError: an item that is no callback.
    """
    if callbacks is None:
        callbacks = []
    elif isinstance(callbacks, (Callback, keras.callbacks.Callback, type)):
        callbacks = [callbacks]
    elif not isinstance(callbacks, (list, tuple)):
        raise TypeError("`callbacks` must be a callback or a list of them. "
                        f"Received: callbacks={callbacks!r} (of type {type(callbacks).__name__})")
    result: list[Callback | None] = []  # None: where the Keras callbacks' adapter goes
    keras_callbacks: list[keras.callbacks.Callback] = []
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.Callback):
            if not keras_callbacks:
                result.append(None)  # the adapter takes the place of the first Keras callback
            keras_callbacks.append(callback)
        elif isinstance(callback, Callback):
            result.append(callback)
        elif isinstance(callback, type) and issubclass(callback, (Callback, keras.callbacks.Callback)):
            raise TypeError(
                f"`callbacks` got the class {callback.__name__}, not a callback: create one, e.g. "
                f"callbacks=[{callback.__name__}(...)]. Received: {callback!r}")
        else:
            raise TypeError(
                "`callbacks` must hold kerastrainer.Callback or keras.callbacks.Callback objects. "
                f"Received an item of type {type(callback).__name__}: {callback!r}"
            )
    if keras_callbacks:
        result[result.index(None)] = KerasCallbackAdapter(keras_callbacks)
    if chief and progress_bar and not any(isinstance(c, RichProgressBar) for c in result):
        result.append(RichProgressBar())
    if chief and model_summary and not any(isinstance(c, ModelSummary) for c in result):
        result.append(ModelSummary())
    if checkpointing and not any(isinstance(c, ModelCheckpoint) for c in result):
        result.append(ModelCheckpoint(max_overhead=0.1))  # short epochs: not every one (docs/checkpointing.md)
    return result


#: The callbacks a module's ``configure_callbacks()`` brought, by ``id`` (weakly: each leaves with its
#: last run), so that the next run drops them instead of piling them up.
_BROUGHT_BY_MODULES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def with_module_callbacks(callbacks: list, module: Any) -> list:
    """``callbacks`` (the Trainer's) with those of ``module.configure_callbacks()``: a module
    callback replaces the Trainer's of the same type; those a module brought to an earlier run
    are dropped first, so repeated runs never pile them up.

    Raises:
        TypeError: ``configure_callbacks`` returned something that is no callback.
    """
    brought = module.configure_callbacks()
    kept = [c for c in callbacks if _BROUGHT_BY_MODULES.get(id(c)) is not c]
    if not brought:
        return kept
    try:
        extra = configure_callbacks(brought, chief=False, progress_bar=False, model_summary=False,
                                    checkpointing=False)
    except TypeError as error:
        raise TypeError(f"{type(module).__name__}.configure_callbacks(): {error}") from None
    for callback in extra:
        _BROUGHT_BY_MODULES[id(callback)] = callback
    replaced = {type(c) for c in extra if not isinstance(c, KerasCallbackAdapter)}
    return [c for c in kept if type(c) not in replaced] + extra
