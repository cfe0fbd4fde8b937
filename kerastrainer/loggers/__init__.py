"""Loggers: where metrics and hyperparameters of a run are written."""

from kerastrainer.loggers.base import Logger
from kerastrainer.loggers.csv_logger import CSVLogger
from kerastrainer.loggers.mlflow_logger import MLFlowLogger
from kerastrainer.loggers.tensorboard import TensorBoardLogger, tensorboard_available
from kerastrainer.loggers.wandb_logger import WandbLogger

__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger",
           "tensorboard_available"]
