"""ModelSummary: prints the module's Keras summary when fit starts."""

from __future__ import annotations

from typing import Any, Callable, TYPE_CHECKING

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class ModelSummary(Callback):
    """Prints ``module.summary()`` at the start of fit (the module is built by then).

    Args:
        expand_nested: also list the layers inside nested models.
        print_fn: where lines go (default: Keras prints to the console).

    Examples:
        >>> summary = ModelSummary(expand_nested=True)
    """

    def __init__(self, *, expand_nested: bool = False,
                 print_fn: Callable[[str], Any] | None = None) -> None:
        self.expand_nested = expand_nested
        self.print_fn = print_fn

    def on_fit_start(self, trainer: Trainer, module: TrainModule) -> None:
        if trainer.is_global_zero:
            module.summary(expand_nested=self.expand_nested, print_fn=self.print_fn)


class RichModelSummary(ModelSummary):
    """Lightning's name for the summary drawn with ``rich``: Keras 3 already draws
    ``module.summary()`` as a rich table, so this is `ModelSummary` with Lightning's argument.

    Args:
        max_depth: ``1`` lists the module's own layers; more also lists the layers inside nested
            models (Keras expands every level, not a chosen number).
        print_fn: where lines go (default: Keras prints to the console).

    Raises:
        ValueError: ``max_depth`` is not a positive integer.

    Examples:
        >>> summary = RichModelSummary(max_depth=2)
    """

    def __init__(self, *, max_depth: int = 1, print_fn: Callable[[str], Any] | None = None) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError("RichModelSummary: `max_depth` must be an integer >= 1. "
                             f"Received: max_depth={max_depth!r}")
        super().__init__(expand_nested=max_depth > 1, print_fn=print_fn)
        self.max_depth = max_depth
