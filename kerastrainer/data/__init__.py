"""Data: input adapters, the DataModule base class, and ready-made DataModules."""

from kerastrainer.data.arrays import ArrayDataModule
from kerastrainer.data.datamodule import DataModule
from kerastrainer.data.image_folder import ImageFolder
from kerastrainer.data.sources import DEFAULT_BATCH_SIZE, Source, to_source

__all__ = ["ArrayDataModule", "DEFAULT_BATCH_SIZE", "DataModule", "ImageFolder", "Source", "to_source"]
