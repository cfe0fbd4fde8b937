"""Loggers: where metrics and hyperparameters of a run are written."""

from kerastrainer.loggers.base import Logger
from kerastrainer.loggers.csv_logger import CSVLogger
from kerastrainer.loggers.tensorboard import TensorBoardLogger, tensorboard_available

__all__ = ["CSVLogger", "Logger", "TensorBoardLogger", "tensorboard_available"]
