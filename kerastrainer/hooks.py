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
    if hook in getattr(obj, "__dict__", {}):
        return True
    return getattr(type(obj), hook, None) is not getattr(base, hook, None)
