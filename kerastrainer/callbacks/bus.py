"""The callback bus: calls one hook on every callback and on the module, in the documented order."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from kerastrainer.callbacks.base import HOOK_NAMES, Callback
from kerastrainer.hooks import overridden
from kerastrainer.module import TrainModule
from kerastrainer.refusals import add_note


def _annotate(error: BaseException, where: str) -> None:
    """Prefixes ``error``'s message with the hook that raised it, keeping its type and traceback."""
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{where} raised: {error.args[0]}",) + tuple(error.args[1:])
    else:
        add_note(error, f"raised in {where}")


def _names_dataloader_idx(fn) -> bool:
    try:
        return "dataloader_idx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def _timed(profiler, where, fn):
    def call(*args):
        with profiler.profile(f"[hook] {where}"):
            return fn(*args)

    return call


class CallbackBus:
    """Calls hooks on callbacks and the module.

    Order at every hook: plain callbacks (in the order given), then the module, then monitoring
    callbacks (``is_monitor = True``), those that write checkpoints last. Only targets that override a hook are called, so an unused hook
    costs one dict lookup per batch.

    Args:
        callbacks: ``Callback`` instances.
        module: the ``TrainModule`` whose own hooks take no trainer/module arguments.
        trainer: the ``Trainer`` passed to every callback hook.
        profiler: when enabled, every hook call is timed as ``[hook] <Class>.<hook>``.
    """

    def __init__(self, *, callbacks, module, trainer, profiler=None) -> None:
        self.callbacks = callbacks  # the trainer's own list: checkpoints hold every callback in it
        self.trainer = trainer
        # The error last annotated: a hook that calls another (a save from an epoch-end hook) lets
        # it pass through two calls, and it names the innermost hook once. Exceptions take no weak
        # references, so this holds it until the next one.
        self._annotated: BaseException | None = None
        self.module = module
        plain = [c for c in self.callbacks if not c.is_monitor]
        # Checkpoint writers go last, so a saved file holds the epoch's other monitors' state too.
        monitors = sorted((c for c in self.callbacks if c.is_monitor),
                          key=lambda c: c.saves_checkpoints)
        targets = [(c, Callback) for c in plain]
        if module is not None:
            targets.append((module, TrainModule))
        targets += [(c, Callback) for c in monitors]
        self._handlers: dict[str, list] = {name: [] for name in HOOK_NAMES}
        for target, base in targets:  # in the calling order
            for name in overridden(target, HOOK_NAMES, base):
                fn = getattr(target, name)
                # Lightning's batch hooks take dataloader_idx: those that name it get it
                self._handlers[name].append((f"{type(target).__name__}.{name}", fn, base is Callback,
                                             _names_dataloader_idx(fn)))
        if profiler is not None and profiler.enabled:
            # Timing wrappers only when profiling: the disabled path stays one plain call per hook.
            for name, handlers in self._handlers.items():
                self._handlers[name] = [(where, _timed(profiler, where, fn), is_callback, takes_idx)
                                        for where, fn, is_callback, takes_idx in handlers]

    def call(self, hook: str, *args, dataloader_idx: int | None = None) -> Any:
        """Calls ``hook`` on every target that overrides it; ``dataloader_idx`` (which of several
        validation or test datasets) goes to those whose hook has an argument of that name.

        Returns:
            What the module's own hook returned (``None`` without one): its
            ``on_train_batch_start`` may return ``-1`` (end the epoch). Callbacks' returns are
            ignored, as in Lightning.

        Raises:
            Exception: whatever a hook raised, with ``"<Class>.<hook> raised: "`` put before its message.
        """
        answer = None
        for where, fn, is_callback, takes_idx in self._handlers[hook]:
            extra = {"dataloader_idx": dataloader_idx} if takes_idx and dataloader_idx is not None else {}
            try:
                if is_callback:
                    fn(self.trainer, self.module, *args, **extra)
                else:
                    answer = fn(*args, **extra)
            except Exception as error:
                if error is not self._annotated:
                    _annotate(error, where)
                    self._annotated = error
                raise
        return answer

    def has(self, hook: str) -> bool:
        """Whether any target overrides ``hook`` (a traced hook costs nothing when none does)."""
        return bool(self._handlers[hook])

    @contextlib.contextmanager
    def run(self, stage: str, datamodule=None):
        """Around one entry point: ``setup`` first, ``teardown`` (and the DataModule's) last, also
        after an exception, which every target hears of first (``on_exception``). A teardown that
        fails while an error is on its way is attached to that error as a note."""
        error = None
        try:
            self.call("setup", stage)
            yield
        except BaseException as failure:
            self.on_exception(error := failure)
            raise
        finally:
            try:
                self.call("teardown", stage)
                if datamodule is not None:
                    datamodule.teardown(stage)
            except Exception as nested:
                if error is None:
                    raise
                add_note(error, f"teardown also failed: {nested!r}")

    def state_dict(self) -> dict:
        """Every callback's ``state_dict()``, by its ``state_key``."""
        return {c.stored_key: c.state_dict() for c in self.callbacks}

    def load_state_dict(self, state: dict) -> None:
        """Gives each callback its saved state (callbacks the checkpoint does not know keep theirs)."""
        for callback in self.callbacks:
            if callback.stored_key in state:
                callback.load_state_dict(state[callback.stored_key])

    def on_exception(self, exception: BaseException) -> None:
        """Tells every target about ``exception``; failures here must not hide the original error."""
        for where, fn, is_callback, _ in self._handlers["on_exception"]:
            try:
                if is_callback:
                    fn(self.trainer, self.module, exception)
                else:
                    fn(exception)
            except Exception as nested:  # report, then keep the original error propagating
                add_note(exception, f"{where} also raised {type(nested).__name__}: {nested}")
