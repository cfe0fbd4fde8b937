"""Callbacks: the base class and the ones kerastrainer ships."""

from kerastrainer.callbacks.backbone_finetuning import BackboneFinetuning
from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.early_stopping import EarlyStopping
from kerastrainer.callbacks.ema import EMA
from kerastrainer.callbacks.finders import BatchSizeFinder, LearningRateFinder
from kerastrainer.callbacks.gradient_accumulation import GradientAccumulationScheduler
from kerastrainer.callbacks.gradient_norm import GradientNormMonitor
from kerastrainer.callbacks.keras_adapter import KerasCallbackAdapter
from kerastrainer.callbacks.lr_monitor import LearningRateMonitor
from kerastrainer.callbacks.model_checkpoint import ModelCheckpoint
from kerastrainer.callbacks.model_summary import ModelSummary, RichModelSummary
from kerastrainer.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from kerastrainer.callbacks.prediction_writer import BasePredictionWriter, PredictionWriter
from kerastrainer.callbacks.progress_bar import RichProgressBar
from kerastrainer.callbacks.swa import StochasticWeightAveraging
from kerastrainer.callbacks.terminate_on_nan import TerminateOnNaN
from kerastrainer.callbacks.throughput import ThroughputMonitor
from kerastrainer.callbacks.timer import Timer

__all__ = [
    "BackboneFinetuning",
    "BasePredictionWriter",
    "BatchSizeFinder",
    "Callback",
    "EMA",
    "EarlyStopping",
    "GradientAccumulationScheduler",
    "GradientNormMonitor",
    "KerasCallbackAdapter",
    "LearningRateFinder",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "PredictionWriter",
    "RichModelSummary",
    "RichProgressBar",
    "StochasticWeightAveraging",
    "TerminateOnNaN",
    "ThroughputMonitor",
    "Timer",
]
