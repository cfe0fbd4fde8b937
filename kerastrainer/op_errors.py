"""TensorFlow's runtime errors from a compiled call, with the sentence that says what is wrong first.

An op that fails inside a ``tf.function`` raises an ``OpError`` whose message starts with "Graph
execution error:" and a listing of traced frames; the op's own sentence (a label out of range, a
``detect_anomaly`` assertion, the exception a generator raised) comes last, after the frames. The
compile site re-raises the same error type with that sentence as its first line, the full original
message kept as a note; an exception a generator raised comes back as itself when it is a built-in
type (``KeyError: 'boom'`` from a generator is a ``KeyError``).
"""

from __future__ import annotations

import builtins
import re

import tensorflow as tf

from kerastrainer.refusals import add_note, raise_refusal

_HEADER = "Graph execution error:"
# one bracketed item of a tf.debugging.Assert message: "[text] [1] [loss:] [nan]"
_ASSERT_ITEM = re.compile(r"\[([^\[\]]*)\]")
# the line a Python exception raised in a py_function (a generator) starts with
_RAISED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:Error|Exception|Exit|Interrupt|Iteration)?): (.*)$")


def core_message(message: str) -> str | None:
    """The op's own sentence in a "Graph execution error" ``message``; ``None`` for other messages.

    Example:
        >>> core_message('Graph execution error:\\n\\nDetected at node x defined at (most recent '
        ...              'call last):\\n  File "a.py", line 1, in f\\n\\nlabel 7 is out of range\\n'
        ...              '\\t [[{{node x}}]]')
        'label 7 is out of range'
    """
    if not message.startswith(_HEADER):
        return None
    body = message.split("\n\t [[", 1)[0]
    lines = [line for line in body.splitlines() if line.strip()]
    kept = []
    for line in reversed(lines):  # the sentence follows the last frame (or the detection line)
        if line.startswith("  File ") or line.startswith("Detected at node") or line == _HEADER:
            break
        if line.startswith("    ") or line.startswith("<stack traces"):
            break
        kept.append(line)
    if not kept:
        return None
    text = "\n".join(reversed(kept)).strip()
    if text.startswith("assertion failed: "):
        text = " ".join(item.strip() for item in _ASSERT_ITEM.findall(text[len("assertion failed: "):]))
    return text


def raised_in_python(message: str) -> BaseException | None:
    """The built-in exception a ``py_function`` (a generator's ``next``) raised, rebuilt from its
    line in ``message``; ``None`` when there is none or its type is not built in."""
    if "Traceback (most recent call last)" not in message:
        return None
    for line in message.splitlines():
        match = _RAISED.match(line.strip())
        if match is None:
            continue
        kind = getattr(builtins, match.group(1), None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            text = match.group(2)
            if kind is KeyError and len(text) >= 2 and text[0] == text[-1] == "'":
                text = text[1:-1]  # str(KeyError('a')) is "'a'": rebuild KeyError('a')
            return kind(text)
        return None
    return None


def surfaced_op_error(error: BaseException) -> BaseException:
    """``error`` with the op's sentence first (see the module docstring), or ``error`` itself when
    it is not a "Graph execution error" ``OpError``."""
    if not isinstance(error, tf.errors.OpError):
        return error
    message = error.message
    raised = raised_in_python(message)
    if raised is not None:
        add_note(raised, f"Raised while TensorFlow read the data ({type(error).__name__}):\n{message}")
        return raised
    core = core_message(message)
    if core is None:
        return error
    surfaced = type(error)(error.node_def, error.op, core)
    add_note(surfaced, f"TensorFlow's full message:\n{message}")
    return surfaced


def raise_surfaced(error: BaseException) -> None:
    """Raises what the user should see of an error of a compiled call: the refusal or the user's
    error under AutoGraph's wrappers (`kerastrainer.refusals`), or the op error with its sentence
    first; returns when that is ``error`` itself, and the caller re-raises it. For ``except``
    blocks of the calls that run every step (no context manager there)."""
    raise_refusal(error)
    surfaced = surfaced_op_error(error)
    if surfaced is not error:
        raise surfaced from None  # TensorFlow's full message is its note
