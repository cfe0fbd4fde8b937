"""WandbLogger: a run's config, metrics by global step, summary and checkpoints in Weights & Biases."""

from __future__ import annotations

from typing import Any

import os
import warnings

from kerastrainer.checkpoint_io import NEARLY_FULL, free_space
from kerastrainer.loggers.base import Logger
from kerastrainer.loggers.remote import (STATUS_EXIT_CODES, CheckpointUploads, check_log_model,
                                         flatten, require, score_of)

STEP_KEY = "trainer/global_step"  # every metric is plotted against it (Lightning's name)


class WandbLogger(Logger):
    """Logs a run to Weights & Biases: hyperparameters as its config, every logged value against
    ``trainer/global_step``, the last values in its summary and, with ``log_model``, checkpoints as
    ``model``-type artifacts.

    Needs ``pip install kerastrainer[wandb]``. The run's local files go to
    ``<save_dir>/<project>/version_N/wandb`` (next to its checkpoints).

    Args:
        project: the W&B project; also the local folder name under ``save_dir``.
        name: the run's display name.
        save_dir: the local parent folder (default: the Trainer's ``default_root_dir``).
        offline: keep the run on disk only (``wandb sync`` uploads it later).
        log_model: ``False``: no checkpoints; ``True``: the checkpoints a ``ModelCheckpoint`` keeps
            are logged when the run ends; ``"all"``: each one as soon as it is written. Each file
            is a version of the artifact ``model-<run id>``, aliased ``latest`` (and ``best``).
        id: continue this W&B run. A fit resumed from a checkpoint continues the run the
            checkpoint was logged to by itself.
        **init_kwargs: passed on to ``wandb.init`` (``entity``, ``group``, ``tags``, ``settings``...).

    Raises:
        ModuleNotFoundError: wandb is not installed (the message names the extra).
        ValueError: a ``log_model`` other than ``False``, ``True`` or ``"all"``.

    Examples:
        >>> logger = WandbLogger("digits", offline=True, log_model="all")  # doctest: +SKIP
        >>> trainer = kt.Trainer(logger=logger)  # doctest: +SKIP
    """

    def __init__(self, project: str = "kt_logs", *, name: str | None = None,
                 save_dir: str | os.PathLike | None = None, offline: bool = False,
                 log_model: bool | str = False, id: str | None = None,  # noqa: A002 - wandb's name
                 **init_kwargs: Any) -> None:
        self._wandb = require("wandb", what="WandbLogger", extra="wandb")
        super().__init__(save_dir, name=project)
        self.run_name = name
        self.offline = offline
        self.log_model = check_log_model(log_model, "WandbLogger")
        self.init_kwargs = init_kwargs
        self._run_id = id
        self._run: Any = None
        self._uploads = CheckpointUploads()
        self._step: int | None = None  # the last step logged
        self._warned_full = False

    @property
    def experiment(self) -> Any:
        """The ``wandb`` run (started, or resumed, on first use in a stage)."""
        if self._run is None:
            kwargs = {"project": self.name, "name": self.run_name, "dir": self.log_dir,
                      "mode": "offline" if self.offline else None, **self.init_kwargs}
            if self._run_id is not None:
                kwargs.update(id=self._run_id, resume="allow")
            self._run = self._wandb.init(**kwargs)
            self._run_id = self._run.id
            self._run.define_metric(STEP_KEY)
            self._run.define_metric("*", step_metric=STEP_KEY, step_sync=True)
        return self._run

    @property
    def run_id(self) -> str:
        """The W&B run's id (reading it starts the run only when none was started yet)."""
        return self._run_id if self._run_id is not None else self.experiment.id

    def log_hyperparams(self, params: dict) -> None:
        """Puts ``params`` (nested dicts as ``a/b``) in the run's config."""
        self.experiment.config.update(flatten(params), allow_val_change=True)

    def log_metrics(self, metrics: dict, step: int) -> None:
        row = {key: value for key, value in metrics.items() if isinstance(value, (int, float))}
        self._step = int(step)
        self.experiment.log({**row, STEP_KEY: self._step})
        self._warn_if_full()

    def _warn_if_full(self) -> None:
        """Warns once when the run's folder has (almost) no space left: W&B's writer drops what it
        cannot write without telling the process that logs."""
        if self._warned_full:
            return
        free = free_space(self.log_dir)
        if free is None or free >= NEARLY_FULL:
            return
        self._warned_full = True
        warnings.warn(f"WandbLogger: the run's folder {self.log_dir!r} has {free} bytes free: W&B cannot "
                      "write its run files there and drops what it cannot write without an error. Free "
                      "some space or pass another save_dir.", stacklevel=2)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Remembers the callback; with ``log_model="all"`` logs its new files now."""
        self._uploads.heard_from(checkpoint_callback)
        if self.log_model == "all":
            self._upload()

    def _upload(self) -> None:
        for path, callback in self._uploads.pending():
            score = score_of(path, callback)
            artifact = self._wandb.Artifact(
                f"model-{self.run_id}", type="model",
                metadata={"file": os.path.basename(path), "monitor": callback.monitor, "score": score,
                          "step": self._step})
            artifact.add_file(path, name=os.path.basename(path))
            aliases = ["latest"] + (["best"] if path == callback.best_model_path else [])
            self.experiment.log_artifact(artifact, aliases=aliases)
            self._uploads.uploaded(path)

    def finalize(self, status: str) -> None:
        """Logs the kept checkpoints (``log_model``) and finishes the run: exit code 0 on success,
        1 when it failed, 255 when it was interrupted."""
        if self._run is None:
            return
        try:
            if self.log_model:
                self._upload()
        finally:
            self._run.finish(exit_code=STATUS_EXIT_CODES[status])
            self._run = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "run_id": self._run_id}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("run_id"):
            self._run_id = state["run_id"]
