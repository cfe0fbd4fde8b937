"""ModelCheckpoint: save training checkpoints on a schedule and keep the best k."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import datetime
import functools
import math
import os
import re
import time
import uuid
import warnings

from kerastrainer.callbacks.base import Callback
from kerastrainer.callbacks.monitor import check_mode, monitored_value
from kerastrainer.checkpoint_io import read_group, remove_stale_temporaries
from kerastrainer.stages import TRAIN

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer

_GROUP = re.compile(r"\{([^{}:]+)(:[^{}]*)?\}")


def format_checkpoint_name(template: str, metrics: dict, auto_insert_metric_name: bool = True) -> str:
    """Fills ``"{epoch:02d}-{val_loss:.3f}"`` from ``metrics``; with auto-insert, ``epoch=03-val_loss=0.123``.

    Missing keys count as 0, as in Lightning; a ``/`` in an inserted name becomes ``_``.
    """
    values = dict(metrics)

    def fill(match):
        name = match.group(1)
        spec = match.group(2) or ""
        value = values.get(name, 0)
        text = format(value, spec[1:]) if spec else str(value)
        # a key of one of several datasets (val_loss/dataloader_idx_1) must not make a folder
        return f"{name.replace('/', '_')}={text}" if auto_insert_metric_name else text

    return _GROUP.sub(fill, template)


def _ends_fit(trainer) -> bool:
    """Whether the epoch ending now is the fit's last one, as far as is known at its end."""
    return trainer.should_stop or (trainer.max_epochs != -1 and trainer.current_epoch + 1 >= trainer.max_epochs) \
        or (trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps)


def _check_dirpath(dirpath):
    if dirpath is None:
        return None
    path = os.fspath(dirpath) if isinstance(dirpath, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError("ModelCheckpoint: `dirpath` must be a folder path (a str or pathlib.Path) or "
                        f"None. Received: dirpath={dirpath!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"ModelCheckpoint: `dirpath` must be a folder, but {path!r} is a file. "
                         f"Choose another folder. Received: dirpath={dirpath!r}")
    return path


def _check_filename(filename, auto_insert_metric_name):
    """Fills the template once with stand-in values, so a bad one fails now, not after an epoch."""
    if filename is None:
        return None
    if not isinstance(filename, str) or not filename:
        raise TypeError("ModelCheckpoint: `filename` must be a template such as '{epoch}-{val_loss:.3f}'"
                        f" or None. Received: filename={filename!r}")
    stand_ins = {name: 0 if name in ("epoch", "step") else 0.0 for name, _ in _GROUP.findall(filename)}
    try:
        format_checkpoint_name(filename, stand_ins, auto_insert_metric_name)
    except (ValueError, TypeError) as error:
        raise ValueError(f"ModelCheckpoint: `filename` is not a valid template ({error}); epoch and step "
                         "are integers, logged values floats, e.g. '{epoch:02d}-{val_loss:.3f}'. "
                         f"Received: filename={filename!r}") from None
    return filename


class ModelCheckpoint(Callback):
    """Saves HDF5 training checkpoints (see ``docs/checkpointing.md``) and keeps the best ``save_top_k``.

    Args:
        dirpath: the folder; default ``<log_dir>/checkpoints`` (the run folder of the first logger),
            or ``<default_root_dir>/checkpoints`` without loggers.
        filename: a template such as ``"{epoch:02d}-{val_loss:.3f}"`` (``.ckpt`` is appended);
            default ``"{epoch}-{step}"``, giving ``epoch=3-step=120.ckpt``.
        monitor: the value ranking checkpoints; ``None`` keeps the most recent ones.
        mode: ``"min"`` or ``"max"``: which values of ``monitor`` are better.
        save_top_k: how many to keep; ``-1`` keeps all, ``0`` none (with ``save_last``, only last).
        save_last: also write ``last.ckpt`` every time a checkpoint is saved.
        every_n_epochs: save at the end of every n-th epoch. Default 1, or off when
            ``every_n_train_steps`` or ``train_time_interval`` is given.
        every_n_train_steps: save after every n optimizer steps (at the end of the compiled call).
        train_time_interval: save when this much time (seconds or ``timedelta``) has passed.
        save_weights_only: store only the module (loadable with ``load_from_checkpoint``, not
            resumable).
        auto_insert_metric_name: write ``epoch=3`` rather than ``3`` in file names.
        verbose: print each save.
        save_on_train_epoch_end: ``True`` (the default, ``None``): the epoch checkpoints are taken
            at the end of the training epoch, after its validation; ``False``: at the end of every
            validation run of the fit, mid-epoch ones (``val_check_interval``) too.
        max_overhead: a fraction of the training time (``0.1``): epoch-end saves that would make
            checkpointing take more than that since the previous save are skipped, and the fit's
            last epoch is always saved. Epochs of milliseconds are then saved every few epochs, not
            every one (a crash loses at most about ``1 / max_overhead`` saves' time of training).
            The default checkpoint of ``Trainer(enable_checkpointing=True)`` uses ``0.1``; ``None``
            (the default here) saves every due epoch. Single-worker runs only (each worker's clock
            would decide differently).
        enable_version_counter: a file of the same name that this callback did not write (another
            run's) is never replaced: the new one is ``<name>-v1.ckpt``, ``-v2``, ... (Lightning's;
            single-worker runs: several workers must name their files alike).

    Attributes:
        best_model_path, best_model_score, last_model_path, best_k_models: as in Lightning.

    Raises:
        ValueError, TypeError: a bad argument (a ``filename`` template that cannot be filled, a
            ``dirpath`` that is a file, ...), when the callback is made.

    Examples:
        >>> checkpoint = ModelCheckpoint(monitor="val_acc", mode="max", save_top_k=2, save_last=True)
    """

    is_monitor = True
    saves_checkpoints = True
    FILE_EXTENSION = ".ckpt"
    CHECKPOINT_NAME_LAST = "last"

    chunk_aware = True

    def step_interval(self, trainer: Trainer) -> int | None:
        return self.every_n_train_steps or None

    def __init__(self, *, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 monitor: str | None = None, mode: str = "min", save_top_k: int = 1,
                 save_last: bool = False, every_n_epochs: int | None = None,
                 every_n_train_steps: int | None = None,
                 train_time_interval: datetime.timedelta | float | None = None,
                 save_weights_only: bool = False, auto_insert_metric_name: bool = True,
                 verbose: bool = False, save_on_train_epoch_end: bool | None = None,
                 enable_version_counter: bool = True, max_overhead: float | None = None) -> None:
        self.mode = check_mode(mode, "ModelCheckpoint")
        if max_overhead is not None and (isinstance(max_overhead, bool) or
                                         not isinstance(max_overhead, (int, float)) or not 0 < max_overhead < 1):
            raise ValueError("ModelCheckpoint: `max_overhead` must be a fraction of the training time "
                             f"between 0 and 1 (0.1: at most 10%), or None. Received: max_overhead={max_overhead!r}")
        self.max_overhead = max_overhead
        self._save_cost = 0.0  # seconds the last save held the loop up (measured with max_overhead)
        self._saved_at = 0.0
        for name, value, low in (("save_top_k", save_top_k, -1), ("every_n_epochs", every_n_epochs, 0),
                                 ("every_n_train_steps", every_n_train_steps, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"ModelCheckpoint: `{name}` must be an int >= {low}. "
                                 f"Received: {name}={value!r}")
        if isinstance(train_time_interval, datetime.timedelta):
            train_time_interval = train_time_interval.total_seconds()
        if train_time_interval is not None and not train_time_interval > 0:
            raise ValueError("ModelCheckpoint: `train_time_interval` must be positive seconds or a "
                             f"timedelta. Received: train_time_interval={train_time_interval!r}")
        if every_n_epochs is None:
            every_n_epochs = 0 if (every_n_train_steps or train_time_interval) else 1
        self.dirpath = _check_dirpath(dirpath)
        self.filename = _check_filename(filename, auto_insert_metric_name)
        self.monitor = monitor
        self.save_top_k = save_top_k
        self.save_last = save_last
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps or 0
        self.train_time_interval = train_time_interval
        self.save_weights_only = save_weights_only
        self.auto_insert_metric_name = auto_insert_metric_name
        self.verbose = verbose
        self.save_on_train_epoch_end = save_on_train_epoch_end is not False
        self.enable_version_counter = enable_version_counter
        self._versioning = enable_version_counter  # decided per run in setup
        self.best_k_models: dict[str, float] = {}
        self.best_model_path = ""
        self.best_model_score: float | None = None
        self.last_model_path = ""
        self._recent: list[str] = []  # monitor=None: most recent first
        self._last_global_step_saved = -1
        self._last_time = 0.0  # set when the run starts (setup)
        self._run = ""  # the fit's id, in the book of every file it writes: new per fit, restored on resume
        self._restored = False  # a resume's book came in: reconcile the folder with it
        self._ahead: dict[str, int] = {}  # an interrupted run's files of later steps: path -> step

    @property
    def state_key(self) -> str:
        return (f"ModelCheckpoint{{'monitor': {self.monitor!r}, 'mode': {self.mode!r}, "
                f"'every_n_train_steps': {self.every_n_train_steps}, 'every_n_epochs': "
                f"{self.every_n_epochs}, 'train_time_interval': {self.train_time_interval}}}")

    def state_dict(self) -> dict:
        return {
            "monitor": self.monitor, "dirpath": self.dirpath,
            "best_model_path": self.best_model_path, "best_model_score": self.best_model_score,
            "last_model_path": self.last_model_path,
            "best_k_models": [[path, score] for path, score in self.best_k_models.items()],
            "recent": list(self._recent), "last_global_step_saved": self._last_global_step_saved,
            "run": self._run,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("dirpath") not in (None, self.dirpath) and self.dirpath is not None:
            return  # a different folder now: do not adopt (or later delete) files from the old one
        self.best_model_path = state_dict["best_model_path"]
        self.best_model_score = state_dict["best_model_score"]
        self.last_model_path = state_dict["last_model_path"]
        self.best_k_models = {path: float(score) for path, score in state_dict["best_k_models"]}
        self._recent = list(state_dict["recent"])
        self._last_global_step_saved = int(state_dict["last_global_step_saved"])
        run = state_dict.get("run")
        if isinstance(run, str) and run:  # a checkpoint of an older version has none: nothing to reconcile
            self._run = run
            self._restored = True
        if self.dirpath is not None:  # else once setup knows the folder
            self._forget_files_elsewhere()

    def _forget_files_elsewhere(self) -> None:
        """Drops, with a warning, every file of a restored book that is not in this callback's
        folder: the book says which files a later save deletes, and a checkpoint is untrusted
        input (a crafted one could name any file)."""
        folder = os.path.realpath(self.dirpath)

        def inside(path) -> bool:
            if not isinstance(path, str) or not path:
                return False
            return os.path.commonpath([folder, os.path.realpath(path)]) == folder

        foreign = sorted({str(p) for p in self._named() if p and not inside(p)})
        if not foreign:
            return
        warnings.warn(f"ModelCheckpoint: the restored checkpoint state names files outside its folder "
                      f"{self.dirpath!r}, which it will neither use nor delete: {foreign}")
        self.best_k_models = {p: score for p, score in self.best_k_models.items() if inside(p)}
        self._recent = [p for p in self._recent if inside(p)]
        if not inside(self.best_model_path):
            self.best_model_path = ""
            self.best_model_score = None
        if not inside(self.last_model_path):
            self.last_model_path = ""

    # ------------------------------------------------------------------ triggers
    def setup(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        if trainer.num_workers > 1 and self.train_time_interval is not None:
            raise ValueError(
                "ModelCheckpoint(train_time_interval=...) cannot be used with several workers: each "
                "worker's clock would save at different steps. Use every_n_train_steps instead. "
                f"Received: train_time_interval={self.train_time_interval}")
        if self.dirpath is None:  # beside the logs of this run, like Lightning; with several
            # workers in default_root_dir, which every worker resolves alike for ckpt_path="last"
            root = (trainer.log_dir if trainer.loggers and trainer.num_workers == 1
                    else trainer.default_root_dir)
            self.dirpath = os.path.join(str(root), "checkpoints")
            self._forget_files_elsewhere()  # a book restored before the folder was known
        if trainer.is_global_zero:  # what killed writers of earlier runs left (never a live one's)
            remove_stale_temporaries(self.dirpath)
        if stage == "fit":  # a new run until a resume restores the interrupted one's id
            self._run = uuid.uuid4().hex
            self._restored = False
            self._ahead = {}
        # Several workers keep one book, so they must name files alike: one worker could see a
        # file another has just written. Versions are for single-worker runs.
        self._versioning = self.enable_version_counter and trainer.num_workers == 1 \
            and trainer.is_global_zero
        self._last_time = time.monotonic()

    def on_fit_start(self, trainer: Trainer, module: TrainModule) -> None:
        if self._restored and trainer.is_global_zero:
            self._reconcile()

    def _named(self) -> list:
        """The files the book names (some may be empty strings)."""
        return [self.best_model_path, self.last_model_path, *self.best_k_models, *self._recent]

    def _kept(self) -> set:
        """The files the book keeps, as absolute paths."""
        return {os.path.abspath(path) for path in self._named() if path}

    def _reconcile(self) -> None:
        """After a resume: the files in the folder that this run wrote and its restored book does
        not keep (a kill can land after a file was written and before the book that keeps it, or
        before a file that left the top k was deleted). Those of earlier steps are removed now; those
        of later steps stay until the resumed run saves past them (it writes them again: nothing of
        the run is lost if it stops before). A file is this run's when it names itself in this
        callback's book with this run's id, as each file's book does (see `_write`)."""
        kept = self._kept()
        removed = []
        for name in sorted(os.listdir(self.dirpath)):
            path = os.path.join(self.dirpath, name)
            if not name.endswith(self.FILE_EXTENSION) or os.path.abspath(path) in kept:
                continue
            step = self._own_step(path)
            if step is None:
                continue
            if step <= self._last_global_step_saved:
                os.remove(path)
                removed.append(path)
            else:
                self._ahead[path] = step
        if removed:
            warnings.warn(f"ModelCheckpoint: removed {len(removed)} checkpoint file(s) this run wrote "
                          f"that the checkpoint it resumed from no longer keeps (a save was cut off): "
                          f"{removed}")

    def _own_step(self, path: str) -> int | None:
        """The step at which this run saved ``path`` when the file holds this callback's book with
        this run's id and names itself there; else ``None`` (another run's file, or no checkpoint)."""
        book = read_group(path, "callbacks").get(self.stored_key)
        if not isinstance(book, dict) or book.get("run") != self._run:
            return None
        named = [book.get("last_model_path"), *(book.get("recent") or []),
                 *(entry[0] for entry in book.get("best_k_models") or [] if entry)]
        if os.path.abspath(path) not in {os.path.abspath(str(p)) for p in named if p}:
            return None
        return int(book.get("last_global_step_saved", -1))

    def _drop_superseded(self, trainer) -> None:
        """Removes the files of an interrupted run's later steps once this run has saved past them
        (each is in the book again, or left it), after the new files are in place."""
        kept = self._kept()
        for path, step in list(self._ahead.items()):
            if step > trainer.global_step:
                continue
            del self._ahead[path]
            if os.path.abspath(path) not in kept:
                trainer.checkpoint_writer.after_pending(functools.partial(self._remove, trainer, path))

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        due_steps = self.every_n_train_steps and (
            step // self.every_n_train_steps > self._last_global_step_saved // self.every_n_train_steps
            if self._last_global_step_saved >= 0 else step >= self.every_n_train_steps)
        due_time = (self.train_time_interval is not None
                    and time.monotonic() - self._last_time >= self.train_time_interval)
        if due_steps or due_time:
            self._save(trainer, module)

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self.save_on_train_epoch_end and self._epoch_due(trainer):
            self._save(trainer, module)

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        if not self.save_on_train_epoch_end and trainer.stage == TRAIN and \
                not trainer.sanity_checking and self._epoch_due(trainer):
            self._save(trainer, module)

    def _epoch_due(self, trainer) -> bool:
        due = bool(self.every_n_epochs) and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        budgeted = self.max_overhead is not None and trainer.num_workers == 1  # workers' clocks differ
        return due and (not budgeted or _ends_fit(trainer) or self._within_budget(trainer))

    def _within_budget(self, trainer) -> bool:
        """Whether a save now keeps checkpointing within ``max_overhead`` of the time since the
        last one (epochs shorter than that are saved less often; the fit's last one always). A
        background write counts in full: it competes with the loop for the interpreter."""
        cost = self._save_cost + trainer.checkpoint_writer.last_write_s
        return cost <= self.max_overhead * (time.monotonic() - self._saved_at + cost)

    # ------------------------------------------------------------------ saving
    def _save(self, trainer, module):
        if self._last_global_step_saved == trainer.global_step:
            return  # already saved this exact state (a step trigger at the epoch's last batch)
        started = time.monotonic()
        trainer.checkpoint_writer.wait()  # the previous save's file and follow-ups are done: the book is free
        current = None
        if self.monitor:
            current = monitored_value(trainer.callback_metrics, self.monitor, "ModelCheckpoint",
                                      validates=trainer.num_val_batches != 0)
        if self.monitor and current is None:
            return  # no validation this epoch
        self._last_global_step_saved = trainer.global_step
        self._last_time = time.monotonic()
        metrics = dict(trainer.callback_metrics, epoch=trainer.current_epoch, step=trainer.global_step)
        saved = False
        if self.save_top_k != 0:
            if self.monitor is None:
                saved = self._save_recent(trainer, metrics)
            elif self._is_top_k(current):
                saved = self._save_top_k(trainer, metrics, current)
        if self.save_last:
            last = self._path(metrics, self.CHECKPOINT_NAME_LAST)
            book = self.state_dict()
            self.last_model_path = last  # in the file's own book: a run resumed from it replaces it
            self._write(trainer, last, book)
            saved = True
        for logger in trainer.loggers if saved else ():  # the chief's only; once the files are in place
            trainer.checkpoint_writer.after_pending(functools.partial(logger.after_save_checkpoint, self))
        self._drop_superseded(trainer)
        self._saved_at = time.monotonic()
        self._save_cost = self._saved_at - started

    def _path(self, metrics, name: str | None = None) -> str:
        if name is None:
            name = format_checkpoint_name(self.filename or "{epoch}-{step}", metrics,
                                          self.auto_insert_metric_name)
        path = os.path.join(self.dirpath, name + self.FILE_EXTENSION)
        own = {*self.best_k_models, *self._recent, self.last_model_path, *self._ahead}
        version = 1
        while self._versioning and os.path.exists(path) and path not in own:
            path = os.path.join(self.dirpath, f"{name}-v{version}{self.FILE_EXTENSION}")
            version += 1  # another run's file: never replaced
        return path

    def _write(self, trainer, path, book) -> None:
        """Saves ``path`` with the book already holding it (as Lightning does: a run resumed from
        this file knows it is the best or the newest, and a resume after a kill can tell its own
        files); a failed write puts the ``book`` back."""
        try:
            trainer.save_checkpoint(path, weights_only=self.save_weights_only)
        except BaseException:
            self.load_state_dict(book)
            raise

    def _save_recent(self, trainer, metrics):
        path = self._path(metrics)
        book = self.state_dict()
        self._recent = [path] + [p for p in self._recent if p != path]
        self.best_model_path = path
        dropped = self._recent[self.save_top_k:] if self.save_top_k > 0 else []
        self._recent = [p for p in self._recent if p not in dropped]
        self._write(trainer, path, book)
        for old in dropped:  # only once the new file is in place
            trainer.checkpoint_writer.after_pending(functools.partial(self._remove, trainer, old))
        return True

    def _is_top_k(self, current: float) -> bool:
        if math.isnan(current):
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        worst = self._worst()
        return current < self.best_k_models[worst] if self.mode == "min" else \
            current > self.best_k_models[worst]

    def _worst(self) -> str:
        pick = max if self.mode == "min" else min
        return pick(self.best_k_models, key=lambda path: self.best_k_models[path])

    def _save_top_k(self, trainer, metrics, current):
        path = self._path(metrics)
        book = self.state_dict()
        worst = None
        self.best_k_models[path] = current
        if self.save_top_k != -1 and len(self.best_k_models) > self.save_top_k:
            worst = self._worst()
            del self.best_k_models[worst]
        pick = min if self.mode == "min" else max
        self.best_model_path = pick(self.best_k_models, key=self.best_k_models.get)
        self.best_model_score = self.best_k_models[self.best_model_path]
        self._write(trainer, path, book)
        if worst is not None and worst != path:  # deleted only once the new file is in place
            trainer.checkpoint_writer.after_pending(functools.partial(self._remove, trainer, worst))
        if self.verbose:
            print(f"ModelCheckpoint: saved {path} ({self.monitor}={current:.6g})")
        return True

    def _remove(self, trainer, path):
        """Deletes a file that left the top k. Only the chief manages its files (the other
        workers keep the same book but wrote to scratch folders), and one already gone is fine."""
        if not trainer.is_global_zero or not path or path == self.last_model_path:
            return
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
