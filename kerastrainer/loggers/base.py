"""The Logger base class and the run-folder rule: <save_dir>/<name>/version_N."""

from __future__ import annotations

from typing import Any

import json
import os
import re

from kerastrainer.checkpoint_io import atomic_write_text


def path_component(owner: str, argument: str, value):
    """Checks that a logger's ``name`` or ``version`` is one folder name inside its parent: a
    version may come from a checkpoint (untrusted input), and ``..``, a separator or an absolute
    path would put the run's files elsewhere.

    Raises:
        ValueError: ``value`` is not a single path component; the message names it.
        TypeError: ``value`` is neither a string nor (for a version) an int.
    """
    if argument == "version" and (value is None or (isinstance(value, int) and not isinstance(value, bool))):
        if value is not None and value < 0:
            raise ValueError(f"{owner}: `version` must be an int >= 0, a folder name or None. "
                             f"Received: version={value!r}")
        return value
    if not isinstance(value, str):
        kinds = "an int, a folder name or None" if argument == "version" else "a folder name (a str)"
        raise TypeError(f"{owner}: `{argument}` must be {kinds}. Received: {argument}={value!r}")
    if argument == "name" and value == "":
        return value  # no experiment folder: runs sit in save_dir itself (Lightning's rule)
    separators = {sep for sep in (os.sep, os.altsep, "/") if sep}
    if value in ("", ".", "..") or any(sep in value for sep in separators) or "\0" in value \
            or os.path.isabs(value):
        raise ValueError(f"{owner}: `{argument}` must be a single folder name (no '..', path separator "
                         "or absolute path): it names a folder inside the logger's save_dir. "
                         f"Received: {argument}={value!r}")
    return value


def next_version(root: str) -> int:
    """The first ``N`` such that ``<root>/version_N`` does not exist yet (never reuse a run)."""
    taken = [int(m.group(1)) for entry in (os.listdir(root) if os.path.isdir(root) else [])
             if (m := re.fullmatch(r"version_(\d+)", entry))]
    return max(taken) + 1 if taken else 0


def claim_version(root: str) -> int:
    """Creates ``<root>/version_N`` for the first free ``N`` and returns ``N``. The folder is made
    with an exclusive ``mkdir``, so runs starting together (threads, processes, hosts sharing a
    folder) never get the same one: the loser of a race takes the next number."""
    os.makedirs(root, exist_ok=True)
    version = next_version(root)
    while True:
        try:
            os.mkdir(os.path.join(root, f"version_{version}"))
            return version
        except FileExistsError:
            version += 1


class Logger:
    """Base class of loggers: receives metric rows and hyperparameters, owns a run folder.

    Args:
        save_dir: the parent folder (default: the Trainer's ``default_root_dir``).
        name: the experiment name, a sub-folder of ``save_dir``.
        version: an int (``version_N``), a string (used as the folder name) or ``None`` for the next
            free ``version_N``.

    Examples:
        >>> class PrintLogger(Logger):
        ...     def log_metrics(self, metrics, step):
        ...         print(step, metrics)
    """

    def __init__(self, save_dir: str | os.PathLike | None = None, *, name: str = "kt_logs",
                 version: int | str | None = None) -> None:
        self._save_dir = os.fspath(save_dir) if save_dir is not None else None
        self._name = path_component(type(self).__name__, "name", name)
        self._version = path_component(type(self).__name__, "version", version)

    def attach(self, default_root_dir: str) -> None:
        """Called by the Trainer: fills in ``save_dir`` when it was not given."""
        if self._save_dir is None:
            self._save_dir = default_root_dir

    @property
    def save_dir(self) -> str:
        return self._save_dir or os.getcwd()

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        """The run's version: given, restored from a checkpoint, or claimed at first use (when a run
        starts, or earlier if read earlier): the next free ``version_N``, its folder created."""
        if self._version is None:
            self._version = claim_version(os.path.join(self.save_dir, self.name))
        return self._version

    @version.setter
    def version(self, value: int | str | None) -> None:
        self._version = path_component(type(self).__name__, "version", value)

    @property
    def has_version(self) -> bool:
        """Whether the version is fixed yet (reading ``version`` would fix it)."""
        return self._version is not None

    @property
    def log_dir(self) -> str:
        """``<save_dir>/<name>/version_N`` (created on first access)."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        path = os.path.join(self.save_dir, self.name, version)
        os.makedirs(path, exist_ok=True)
        return path

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Records ``metrics`` (Python floats) at ``step``; epoch rows carry an ``epoch`` key."""

    def log_hyperparams(self, params: dict) -> None:
        """Records the run's hyperparameters (default: ``hparams.json`` in the run folder)."""
        atomic_write_text(os.path.join(self.log_dir, "hparams.json"),
                          json.dumps(dict(params), indent=2, sort_keys=True, default=repr))

    def log_model_graph(self, module: Any, input_signature: Any) -> None:
        """Called when fit starts, with the module and the spec of its inputs (default: nothing)."""

    def after_epoch(self, module: Any, epoch: int) -> None:
        """Called at every training epoch's end, after its row was logged (default: nothing)."""

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Called by a [`ModelCheckpoint`][kerastrainer.callbacks.ModelCheckpoint] each time it
        has written its files (complete, renamed into place), with the callback itself: its
        ``best_model_path``, ``last_model_path`` and ``best_k_models`` name them. Loggers that
        upload checkpoints (MLflow, W&B) do it here (default: nothing)."""

    def resume(self, step: int) -> None:
        """Called when a fit resumes at ``step``: forget anything recorded after it."""

    def save(self) -> None:
        """Writes buffered data to disk."""

    def finalize(self, status: str) -> None:
        """Called once when the run ends: ``"success"``, ``"failed"`` or ``"interrupted"``."""
        self.save()

    def state_dict(self) -> dict:
        return {"version": self.version}

    def load_state_dict(self, state: dict) -> None:
        """Resumes the run's version (a checkpoint's: checked, as any untrusted input)."""
        self._version = path_component(f"{type(self).__name__} (restored from a checkpoint)", "version",
                                       state["version"])
