"""kerastrainer: a Lightning-style trainer for Keras 3 on TensorFlow."""

from kerastrainer import callbacks, data, loggers, lr
from kerastrainer.callbacks.base import Callback
from kerastrainer.data import DataModule
from kerastrainer.export import export_saved_model
from kerastrainer.hparams import AttributeDict
from kerastrainer.module import TrainModule
from kerastrainer.plot import plot_metrics
from kerastrainer.seed import seed_everything
from kerastrainer.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "AttributeDict",
    "Callback",
    "DataModule",
    "TrainModule",
    "Trainer",
    "callbacks",
    "data",
    "export_saved_model",
    "loggers",
    "lr",
    "plot_metrics",
    "seed_everything",
]
