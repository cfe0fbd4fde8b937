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
