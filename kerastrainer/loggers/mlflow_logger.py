"""MLFlowLogger: a run's parameters, metrics at their steps, status and checkpoints in MLflow."""

from __future__ import annotations

from typing import Any

import os
import re
import socket
import time
import warnings
from urllib.parse import urlsplit

from kerastrainer.loggers.base import Logger
from kerastrainer.loggers.remote import CheckpointUploads, check_log_model, flatten, require

# The status MLflow shows for each way a kerastrainer run ends.
RUN_STATUS = {"success": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_BAD_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-. :/]")
_MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's length (500 before 2.x servers)


#: Seconds a tracking server gets to accept a connection when a run first uses it.
REACH_TIMEOUT_SECONDS = 5.0


def check_reachable(tracking_uri: str, timeout: float = REACH_TIMEOUT_SECONDS) -> None:
    """Connects once to an ``http(s)`` tracking server, so that a wrong or stopped one fails in
    seconds with its URI named; other stores (files, databases) are not checked.

    Raises:
        ConnectionError: nothing accepts a connection at the URI's host and port.
    """
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(
            f"MLFlowLogger: the tracking server {tracking_uri!r} cannot be reached ({error}). Start "
            "it, or pass the address of a running one as `tracking_uri` (or MLFLOW_TRACKING_URI). "
            f"Received: tracking_uri={tracking_uri!r}") from None


class MLFlowLogger(Logger):
    """Logs a run to MLflow: hyperparameters as params, every logged value as a metric at its
    global step, the run's status when it ends and, with ``log_model``, its checkpoints.

    Needs ``pip install kerastrainer[mlflow]`` (``mlflow-skinny``; a full ``mlflow`` works too).

    Args:
        experiment_name: the MLflow experiment (made when missing); also the local folder name under
            ``save_dir`` where the run's checkpoints go.
        run_name: the run's name in the MLflow UI.
        tracking_uri: where runs are stored: a server (``http://host:5000``), a database
            (``sqlite:///mlflow.db``, needs the full ``mlflow``) or a folder (``file:./mlruns``).
            Default: the ``MLFLOW_TRACKING_URI`` environment variable, else ``file:<save_dir>/mlruns``.
            MLflow 3.7 and later refuse folder stores unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set.
        tags: tags set on the run when it is made.
        log_model: ``False``: no checkpoints; ``True``: the checkpoints a ``ModelCheckpoint`` keeps
            (its best k and last) are logged as artifacts under ``checkpoints/`` when the run ends;
            ``"all"``: each checkpoint as soon as it is written (also those the top k later drops).
        save_dir: the local parent folder (default: the Trainer's ``default_root_dir``).
        run_id: continue this MLflow run instead of making one. A fit resumed from a checkpoint
            continues the run the checkpoint was logged to by itself.

    Raises:
        ModuleNotFoundError: MLflow is not installed (the message names the extra).
        ValueError: a ``log_model`` other than ``False``, ``True`` or ``"all"``.

    Examples:
        >>> logger = MLFlowLogger("digits", tracking_uri="http://localhost:5000",
        ...                       log_model=True)  # doctest: +SKIP
        >>> trainer = kt.Trainer(logger=logger)  # doctest: +SKIP
    """

    def __init__(self, experiment_name: str = "kt_logs", *, run_name: str | None = None,
                 tracking_uri: str | None = None, tags: dict[str, Any] | None = None,
                 log_model: bool | str = False, save_dir: str | os.PathLike | None = None,
                 run_id: str | None = None) -> None:
        self._mlflow = require("mlflow", what="MLFlowLogger", extra="mlflow")
        super().__init__(save_dir, name=experiment_name)
        self.log_model = check_log_model(log_model, "MLFlowLogger")
        self.run_name = run_name
        self.tags = dict(tags or {})
        self._tracking_uri = tracking_uri
        self._client: Any = None
        self._run_id = run_id
        self._open = False  # whether this process has (re)opened the run since it last ended
        self._uploads = CheckpointUploads()
        self._renamed: set[str] = set()

    @property
    def tracking_uri(self) -> str:
        if self._tracking_uri is None:
            self._tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or \
                "file:" + os.path.abspath(os.path.join(self.save_dir, "mlruns"))
        return self._tracking_uri

    @property
    def experiment(self) -> Any:
        """The ``mlflow.tracking.MlflowClient`` (Lightning's ``logger.experiment``)."""
        if self._client is None:
            check_reachable(self.tracking_uri)  # before MLflow's own retries (minutes of silence)
            self._client = self._mlflow.tracking.MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        return self.experiment.get_run(self.run_id).info.experiment_id

    @property
    def run_id(self) -> str:
        """The MLflow run's id (the run is made on first use)."""
        if self._run_id is None:
            self._run_id = self._create_run()
            self._open = True
        return self._run_id

    def _active_run(self) -> str:
        """The run, marked running again when a stage logs to it after an earlier one ended it."""
        run_id = self.run_id
        if not self._open:
            self.experiment.update_run(run_id, status="RUNNING")
            self._open = True
        return run_id

    def _create_run(self) -> str:
        try:
            found = self.experiment.get_experiment_by_name(self.name)
            experiment_id = found.experiment_id if found is not None else \
                self.experiment.create_experiment(self.name)
        except self._mlflow.exceptions.MlflowException as error:
            if "MLFLOW_ALLOW_FILE_STORE" not in str(error):
                raise
            raise RuntimeError(
                f"MLFlowLogger: this MLflow refuses the folder store {self.tracking_uri!r}. Set the "
                "environment variable MLFLOW_ALLOW_FILE_STORE=true, or pass a server or database as "
                "`tracking_uri` (for example 'sqlite:///mlflow.db', with `pip install mlflow`).") from error
        run = self.experiment.create_run(experiment_id, run_name=self.run_name,
                                         tags={str(k): str(v) for k, v in self.tags.items()})
        return run.info.run_id

    def log_hyperparams(self, params: dict) -> None:
        """Logs ``params`` (nested dicts as ``a/b``) as run parameters. MLflow never changes a
        parameter, so on a resumed run only the new ones are logged (a changed one: a warning)."""
        flat = {key: str(value)[:_MAX_PARAM_VALUE] for key, value in flatten(params).items()}
        known = self.experiment.get_run(self._active_run()).data.params
        changed = sorted(key for key in flat if key in known and known[key] != flat[key])
        if changed:
            warnings.warn(f"MLFlowLogger: the run already has parameters {changed} with other values; "
                          "MLflow keeps the first ones.", stacklevel=2)
        new = [self._mlflow.entities.Param(key, value) for key, value in flat.items() if key not in known]
        for start in range(0, len(new), 100):  # MLflow takes at most 100 per batch
            self.experiment.log_batch(self._active_run(), params=new[start:start + 100])

    def log_metrics(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        rows = [self._mlflow.entities.Metric(self._key(key), float(value), now, int(step))
                for key, value in metrics.items() if isinstance(value, (int, float))]
        for start in range(0, len(rows), 1000):  # MLflow takes at most 1000 per batch
            self.experiment.log_batch(self._active_run(), metrics=rows[start:start + 1000])

    def _key(self, key: str) -> str:
        clean = _BAD_KEY_CHARACTERS.sub("_", key)
        if clean != key and key not in self._renamed:
            self._renamed.add(key)
            warnings.warn(f"MLFlowLogger: MLflow does not take the metric name {key!r}; it is "
                          f"logged as {clean!r}.", stacklevel=3)
        return clean

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Remembers the callback; with ``log_model="all"`` logs its new files now."""
        self._uploads.heard_from(checkpoint_callback)
        if self.log_model == "all":
            self._upload()

    def _upload(self) -> None:
        for path, _ in self._uploads.pending():
            self.experiment.log_artifact(self._active_run(), path, artifact_path="checkpoints")
            self._uploads.uploaded(path)

    def finalize(self, status: str) -> None:
        """Logs the kept checkpoints (``log_model``) and ends the run with MLflow's status:
        ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self._run_id is None or not self._open:
            return  # nothing was logged in this stage
        try:
            if self.log_model:
                self._upload()
        finally:
            self.experiment.set_terminated(self._run_id, RUN_STATUS[status])
            self._open = False

    def state_dict(self) -> dict:
        return {**super().state_dict(), "run_id": self._run_id}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("run_id"):
            self._run_id, self._open = state["run_id"], False
