"""Whether an object implements a hook itself: one rule for callbacks, modules and Keras callbacks."""

from __future__ import annotations


def overrides(obj, hook: str, base: type) -> bool:
    """True when ``obj`` implements ``hook`` itself rather than inheriting ``base``'s no-op.

    A hook set on the instance (``callback.on_epoch_end = fn``, as ``keras.callbacks.LambdaCallback``
    does) counts as an override, as does one defined by any subclass of ``base``.

    Examples:
        >>> from kerastrainer import Callback
        >>> class Quiet(Callback):
        ...     pass
        >>> overrides(Quiet(), "on_fit_start", Callback)
        False
    """
    return bool(overridden(obj, (hook,), base))


def overridden(obj, hooks, base: type) -> set:
    """The names among ``hooks`` that ``obj`` implements itself (`overrides`, for many hooks at once).

    Examples:
        >>> from kerastrainer import Callback
        >>> class Prints(Callback):
        ...     def on_fit_start(self, trainer, module):
        ...         print("fit")
        >>> sorted(overridden(Prints(), ["on_fit_start", "on_fit_end"], Callback))
        ['on_fit_start']
    """
    own = getattr(obj, "__dict__", {})
    cls = type(obj)
    return {hook for hook in hooks if hook in own or getattr(cls, hook, None) is not getattr(base, hook, None)}
