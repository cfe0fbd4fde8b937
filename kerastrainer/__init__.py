"""kerastrainer: a Lightning-style trainer for Keras 3 on TensorFlow.

The public names load on first use (PEP 562), so ``import kerastrainer`` stays cheap and tools that
need no TensorFlow (the ``kerastrainer launch`` process) never import it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and the API docs; at run time see __getattr__
    from kerastrainer import callbacks, cli, data, distributed, loggers, lr, tuner
    from kerastrainer.callbacks.base import Callback
    from kerastrainer.data import DataModule
    from kerastrainer.export import export_saved_model
    from kerastrainer.hparams import AttributeDict
    from kerastrainer.module import TrainModule
    from kerastrainer.plot import plot_metrics
    from kerastrainer.seed import seed_everything
    from kerastrainer.trainer import Trainer

__version__ = "0.1.0"

_EXPORTS = {
    "AttributeDict": "kerastrainer.hparams",
    "Callback": "kerastrainer.callbacks.base",
    "DataModule": "kerastrainer.data",
    "TrainModule": "kerastrainer.module",
    "Trainer": "kerastrainer.trainer",
    "export_saved_model": "kerastrainer.export",
    "plot_metrics": "kerastrainer.plot",
    "seed_everything": "kerastrainer.seed",
}
_SUBPACKAGES = ("callbacks", "cli", "data", "distributed", "loggers", "lr", "tuner")

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"kerastrainer.{name}")
    else:
        raise AttributeError(f"module 'kerastrainer' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted([*globals(), *__all__])
