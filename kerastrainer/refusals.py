"""Refusals raised while a step is traced reach the user as raised, not behind AutoGraph's wrapper.

AutoGraph re-raises what a traced function raises as a new exception whose message starts with
"in user code:" and a listing of converted frames, so the sentence that names the argument and the
fix lands several lines down. kerastrainer marks the errors it raises about a user's step (a tuple
returned from ``training_step``, a loss that no variable influences, ``self.log`` of text) and the
one compile site re-raises the marked original, keeping AutoGraph's listing as a note because it
points at the user's line.
"""

from __future__ import annotations

import contextlib

_MARK = "_kerastrainer_refusal"


def refusal(error: BaseException) -> BaseException:
    """Marks ``error`` as kerastrainer's refusal of user code; returns it for ``raise``.

    Example:
        >>> from kerastrainer.refusals import refusal, surfaced
        >>> try:
        ...     try:
        ...         raise refusal(TypeError("training_step returned a tuple"))
        ...     except TypeError:
        ...         raise TypeError("in user code: ...")  # what AutoGraph does
        ... except TypeError as wrapped:
        ...     print(surfaced(wrapped))
        training_step returned a tuple
    """
    setattr(error, _MARK, True)
    return error


def surfaced(error: BaseException) -> BaseException:
    """The marked refusal ``error`` wraps (AutoGraph's text added as a note), else ``error``."""
    seen = set()
    original: BaseException | None = error
    while original is not None and id(original) not in seen:
        if getattr(original, _MARK, False):
            break
        seen.add(id(original))
        original = original.__context__
    if original is None or original is error:
        return error
    add_note(original, f"Where, in the traced step ({type(error).__name__} from AutoGraph):\n{error}")
    return original


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)``; on Python 3.10, which has no ``add_note``, the same
    ``__notes__`` list (PEP 678), which tools and later code read alike."""
    if hasattr(error, "add_note"):
        error.add_note(note)
        return
    try:
        error.__notes__ = [*getattr(error, "__notes__", []), note]  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # an exception type that takes no attributes
        pass


def raise_refusal(error: BaseException) -> None:
    """Raises the refusal ``error`` wraps, if any (see `surfaced`); returns otherwise, and the
    caller re-raises ``error``. For ``except`` blocks on paths too hot for a context manager."""
    original = surfaced(error)
    if original is not error:
        raise original from None


@contextlib.contextmanager
def surfacing():
    """Re-raises a refusal that AutoGraph wrapped as the original (see `surfaced`); any other
    error passes unchanged. Wraps calls that trace a step (not run every step)."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised: unwrapped when it is a refusal
        raise_refusal(error)
        raise
