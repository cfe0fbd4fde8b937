"""The callback bus: calls one hook on every callback and on the module, in the documented order."""

from __future__ import annotations

from kerastrainer.callbacks.base import HOOK_NAMES, Callback


def _overrides(obj, name: str, base: type) -> bool:
    """True when ``obj`` defines hook ``name`` itself rather than inheriting the no-op from ``base``."""
    if name in getattr(obj, "__dict__", {}):  # e.g. keras.callbacks.LambdaCallback-style instances
        return True
    return getattr(type(obj), name, None) is not getattr(base, name, None)


def _annotate(error: BaseException, where: str) -> None:
    """Prefixes ``error``'s message with the hook that raised it, keeping its type and traceback."""
    if getattr(error, "_kt_annotated", False):
        return
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{where} raised: {error.args[0]}",) + tuple(error.args[1:])
    elif hasattr(error, "add_note"):
        error.add_note(f"raised in {where}")
    try:
        error._kt_annotated = True
    except AttributeError:  # exceptions with __slots__ cannot carry the flag
        pass


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
        from kerastrainer.module import TrainModule

        self.callbacks = list(callbacks)
        self.trainer = trainer
        self.module = module
        plain = [c for c in self.callbacks if not c.is_monitor]
        # Checkpoint writers go last, so a saved file holds the epoch's other monitors' state too.
        monitors = sorted((c for c in self.callbacks if c.is_monitor),
                          key=lambda c: bool(getattr(c, "saves_checkpoints", False)))
        self._handlers: dict[str, list] = {}
        for name in HOOK_NAMES:
            handlers = [
                (f"{type(c).__name__}.{name}", getattr(c, name), True)
                for c in plain
                if _overrides(c, name, Callback)
            ]
            if module is not None and _overrides(module, name, TrainModule):
                handlers.append((f"{type(module).__name__}.{name}", getattr(module, name), False))
            handlers += [
                (f"{type(c).__name__}.{name}", getattr(c, name), True)
                for c in monitors
                if _overrides(c, name, Callback)
            ]
            self._handlers[name] = handlers
        if profiler is not None and profiler.enabled:
            # Timing wrappers only when profiling: the disabled path stays one plain call per hook.
            for name, handlers in self._handlers.items():
                self._handlers[name] = [(where, _timed(profiler, where, fn), is_callback)
                                        for where, fn, is_callback in handlers]

    def call(self, hook: str, *args) -> None:
        """Calls ``hook`` on every target that overrides it.

        Raises:
            Exception: whatever a hook raised, with ``"<Class>.<hook> raised: "`` put before its message.
        """
        for where, fn, is_callback in self._handlers[hook]:
            try:
                if is_callback:
                    fn(self.trainer, self.module, *args)
                else:
                    fn(*args)
            except Exception as error:
                _annotate(error, where)
                raise

    def on_exception(self, exception: BaseException) -> None:
        """Tells every target about ``exception``; failures here must not hide the original error."""
        for where, fn, is_callback in self._handlers["on_exception"]:
            try:
                if is_callback:
                    fn(self.trainer, self.module, exception)
                else:
                    fn(exception)
            except Exception as nested:  # report, then keep the original error propagating
                if hasattr(exception, "add_note"):
                    exception.add_note(f"{where} also raised {type(nested).__name__}: {nested}")
