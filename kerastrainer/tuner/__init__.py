"""Tuning before training: [`Tuner`][kerastrainer.tuner.Tuner] finds a learning rate
(``lr_find``) and the largest batch size that fits (``scale_batch_size``)."""

from kerastrainer.tuner.lr_finder import LRFinder
from kerastrainer.tuner.tuner import Tuner

__all__ = ["LRFinder", "Tuner"]
