"""The Trainer's loggers: made from the ``logger`` flag, and sent a run's values all at once."""

from __future__ import annotations

from kerastrainer.loggers.base import Logger
from kerastrainer.loggers.csv_logger import CSVLogger
from kerastrainer.loggers.tensorboard import TensorBoardLogger, tensorboard_available


def configure_loggers(logger, default_root_dir: str) -> list:
    """Normalises the ``logger`` flag: ``True`` is CSV (+ TensorBoard when installed), one version.

    Raises:
        TypeError: an item that is no [`Logger`][kerastrainer.loggers.Logger].
    """
    if logger is True:
        csv_logger = CSVLogger(default_root_dir)
        loggers = [csv_logger]
        if tensorboard_available():  # same run folder: the version is fixed now, shared
            loggers.append(TensorBoardLogger(default_root_dir, version=csv_logger.version))
        return loggers
    if logger is False or logger is None:
        return []
    items = list(logger) if isinstance(logger, (list, tuple)) else [logger]
    for item in items:
        if not isinstance(item, Logger):
            raise TypeError(
                "`logger` must be True, False, a kerastrainer.loggers.Logger or a list of them. "
                f"Received an item of type {type(item).__name__}: {item!r}")
        item.attach(default_root_dir)
    return items


def start_fit(loggers, module, datamodule=None, *, resumed_at: int | None) -> None:
    """Tells every logger a fit starts: the step it resumes at (if it does), the hyperparameters
    (the DataModule's, then the module's) and the module's graph."""
    hparams = {**(datamodule.hparams if datamodule is not None else {}), **module.hparams}
    for logger in loggers:
        if resumed_at is not None:
            logger.resume(resumed_at)
        logger.log_hyperparams(hparams)
        logger.log_model_graph(module, module.input_signature)


def log_row(loggers, metrics: dict, step: int, *, hidden=(), epoch: int | None = None) -> None:
    """Sends one row at ``step`` to every logger: the float values of ``metrics`` but the
    ``hidden`` keys (logged with ``logger=False``), and the ``epoch`` for epoch rows."""
    row = {k: v for k, v in metrics.items() if k not in hidden and isinstance(v, float)}
    row = row if epoch is None else {"epoch": epoch, **row}
    for logger in loggers:
        logger.log_metrics(row, step)


def end_epoch(loggers, module, epoch: int) -> None:
    """Tells every logger the epoch ended (histograms, flushing)."""
    for logger in loggers:
        logger.after_epoch(module, epoch)
        logger.save()


def finalize(loggers, status: str) -> None:
    """Tells every logger the run ended: ``"success"``, ``"failed"`` or ``"interrupted"``."""
    for logger in loggers:
        logger.finalize(status)
