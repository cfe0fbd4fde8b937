"""Callbacks: the base class and the ones kerastrainer ships."""

from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.early_stopping import EarlyStopping
from kerastrainer.callbacks.keras_adapter import KerasCallbackAdapter
from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
from kerastrainer.callbacks.model_summary import ModelSummary
from kerastrainer.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from kerastrainer.callbacks.progress import RichProgressBar

__all__ = [
    "Callback",
    "EarlyStopping",
    "KerasCallbackAdapter",
    "ModelCheckpoint",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "RichProgressBar",
]
