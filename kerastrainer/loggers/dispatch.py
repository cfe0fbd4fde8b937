"""The Trainer's loggers: made from the ``logger`` flag, and sent a run's values all at once."""

from __future__ import annotations

import sys

from kerastrainer.checkpoint_io import remove_stale_temporaries
from kerastrainer.loggers.base import Logger
from kerastrainer.loggers.csv_logger import CSVLogger
from kerastrainer.loggers.tensorboard import TensorBoardLogger, tensorboard_available
from kerastrainer.refusals import add_note


def configure_loggers(logger, default_root_dir: str) -> list:
    """Normalises the ``logger`` flag: ``True`` is CSV (+ TensorBoard when installed), one version.

    Raises:
        TypeError: an item that is no [`Logger`][kerastrainer.loggers.Logger].
    """
    if logger is True:
        csv_logger = CSVLogger(default_root_dir)
        loggers: list[Logger] = [csv_logger]
        if tensorboard_available():  # the same run folder: claim_run_folders shares it
            loggers.append(TensorBoardLogger(default_root_dir))
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


def status_of(error) -> str:
    """How a run ended, for the loggers: ``"success"``, ``"interrupted"`` or ``"failed"``."""
    if error is None:
        return "success"
    return "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "failed"


def guarded(error, what: str, fn, *args) -> None:
    """Runs a clean-up step; while ``error`` is on its way, a failure of it becomes a note on
    ``error`` (which keeps propagating, with its exit status) instead of replacing it."""
    try:
        fn(*args)
    except Exception as nested:
        if error is None:
            raise
        add_note(error, f"{what} also failed: {type(nested).__name__}: {nested}")
        if isinstance(error, SystemExit):  # an exit prints no traceback, so no note: say it here
            print(f"kerastrainer: {what} failed as the run exits: {type(nested).__name__}: {nested}",
                  file=sys.stderr, flush=True)


def claim_run_folders(loggers) -> None:
    """When a run starts: each logger without a version claims the next free ``version_N``
    (atomically: `base.claim_version`); loggers with the
    same ``save_dir`` and ``name`` share one folder, so a run's CSV and TensorBoard files sit together."""
    versions: dict[tuple, int | str] = {}
    for logger in loggers:
        root = (logger.save_dir, logger.name)
        if not logger.has_version and root in versions:
            logger.version = versions[root]
        versions.setdefault(root, logger.version)  # reading it claims one when unset
        remove_stale_temporaries(logger.log_dir)  # killed writers' half files (never a live one's)


def finalize(loggers, error=None) -> None:
    """Tells every logger the run ended (see :func:`status_of`); each one flushes what it can,
    even when another one fails. Without an error on its way, the first failure is raised after
    all were tried."""
    status = status_of(error)
    first = None
    for logger in loggers:
        try:
            guarded(error, f"{type(logger).__name__}.finalize", logger.finalize, status)
        except Exception as nested:  # no error on its way: raise the first, after all
            first = first or nested
    if first is not None:
        raise first
