"""Refusals raised while a step is traced reach the user as raised, not behind AutoGraph's wrapper.

Any other error of a user's step (a layer given 5 features after building on 8, a wrong key of a
dict input) reaches the user as the error that was raised too, from under AutoGraph's "in user
code:" and Keras's "Exception encountered when calling" re-raises, whose text becomes notes.

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
    """The marked refusal ``error`` wraps (AutoGraph's text added as a note); else the error that
    AutoGraph's "in user code:" and Keras's "Exception encountered when calling" wrappers wrap
    (their text added as notes, see `unwrapped`); else ``error``."""
    seen = set()
    original: BaseException | None = error
    while original is not None and id(original) not in seen:
        if getattr(original, _MARK, False):
            break
        seen.add(id(original))
        original = original.__context__
    if original is None:
        return unwrapped(error)
    if original is error:
        return error
    add_note(original, f"Where, in the traced step ({type(error).__name__} from AutoGraph):\n{error}")
    return original


_WRAPPERS = ("in user code:", "Exception encountered when calling")


def _wraps(error: BaseException) -> bool:
    """Whether ``error`` is AutoGraph's or Keras's re-raise of the error in its ``__context__``:
    the same type, a message that starts as theirs do."""
    inner = error.__context__
    if inner is None or type(inner) is not type(error):
        return False
    text = str(error.args[0]) if error.args else ""
    return text.startswith(_WRAPPERS)


def unwrapped(error: BaseException) -> BaseException:
    """The error under AutoGraph's and Keras's wrappers, each wrapper's text added to it as a note
    (they point at the user's line and list the call's arguments); ``error`` when it is no wrapper.
    Only wrappers are crossed: an error the user raised while handling another is kept as raised."""
    wrappers: list[BaseException] = []
    original = error
    while _wraps(original) and len(wrappers) < 8:
        wrappers.append(original)
        inner = original.__context__
        assert inner is not None  # _wraps saw it
        original = inner
    for wrapper in wrappers:
        text = str(wrapper.args[0]) if wrapper.args else str(wrapper)
        add_note(original, f"({type(wrapper).__name__} as TensorFlow and Keras report it:)\n{text}")
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
