"""What the experiment-tracking loggers (MLflow, W&B) share: their optional package, flat
parameters, and which checkpoint files are still to upload."""

from __future__ import annotations

from typing import Any

import importlib
import os

STATUS_EXIT_CODES = {"success": 0, "failed": 1, "interrupted": 255}


def require(module: str, *, what: str, extra: str) -> Any:
    """Imports ``module`` or raises the error a user can act on: the extra that installs it.

    Raises:
        ModuleNotFoundError: ``module`` is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{what} needs the `{module}` package, which is not installed. Install it with "
            f"`pip install kerastrainer[{extra}]`.") from error


def check_log_model(log_model: Any, owner: str) -> bool | str:
    if log_model not in (True, False, "all") or not isinstance(log_model, (bool, str)):
        raise ValueError(f"{owner}: `log_model` must be False, True (the kept checkpoints when the "
                         f"run ends) or 'all' (each one as it is written). Received: log_model={log_model!r}")
    return log_model


def flatten(params: dict, prefix: str = "") -> dict:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer/lr": 0.1}``; values other than numbers,
    strings, booleans and ``None`` become their ``repr`` (what both services can store)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)
    return flat


class CheckpointUploads:
    """Remembers the ModelCheckpoint callbacks a logger heard from and the files already uploaded
    (by path and modification time, so ``last.ckpt`` rewritten is uploaded again)."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self._uploaded: set[tuple[str, float]] = set()

    def heard_from(self, callback: Any) -> None:
        if not any(known is callback for known in self.callbacks):
            self.callbacks.append(callback)

    def pending(self) -> list[tuple[str, Any]]:
        """``(path, callback)`` for each kept file not uploaded in its current version, oldest
        first. The kept files are the callback's best k, its best and its last."""
        found = {}
        for callback in self.callbacks:
            for path in (*callback.best_k_models, callback.best_model_path, callback.last_model_path):
                if path and os.path.isfile(path) and (path, os.path.getmtime(path)) not in self._uploaded:
                    found[path] = callback
        return sorted(found.items(), key=lambda item: os.path.getmtime(item[0]))

    def uploaded(self, path: str) -> None:
        self._uploaded.add((path, os.path.getmtime(path)))


def score_of(path: str, callback: Any) -> float | None:
    """The monitored score a kept file was saved with (``None`` without a monitor)."""
    score = callback.best_k_models.get(path)
    return None if score is None else float(score)
