"""Drives plain ``keras.callbacks.Callback`` objects the way ``Model.fit`` does."""

from __future__ import annotations

from typing import Any, Iterable, TYPE_CHECKING

import keras

from kerastrainer.callbacks.base import Callback
from kerastrainer.hooks import overrides
from kerastrainer.stages import TRAIN

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer

_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


def _implements(callback, names) -> bool:
    return any(overrides(callback, name, keras.callbacks.Callback) for name in names)


#: Keras callbacks that would do nothing (or the wrong thing) here, and what to use instead.
_REPLACED = {
    "BackupAndRestore": "resume with kt.callbacks.ModelCheckpoint(save_last=True) and "
                        "trainer.fit(..., ckpt_path='last') instead (exact, mid-epoch included)",
    "ProgbarLogger": "the Trainer draws its own progress bar (enable_progress_bar=True, or "
                     "kt.callbacks.RichProgressBar); drop this one",
}


def _check_supported(callback) -> None:
    for cls in type(callback).__mro__:
        if cls.__module__.startswith("keras") and cls.__name__ in _REPLACED:
            raise ValueError(
                f"keras.callbacks.{cls.__name__} does not work with kerastrainer: "
                f"{_REPLACED[cls.__name__]}. Received: {type(callback).__name__}")


def _direction(metrics: dict, monitor: str) -> str | None:
    """``"max"`` or ``"min"`` for ``monitor`` (``val_`` stripped) from a configured metric's
    direction, as Keras finds it among a compiled model's metrics."""
    metric = metrics.get(monitor.removeprefix("val_"))
    if metric is None or not hasattr(metric, "_direction"):
        return None
    return "max" if metric._direction == "up" else "min"


class KerasCallbackAdapter(Callback):
    """Runs Keras callbacks inside a Trainer, with ``model``, ``params``, ``stop_training`` and logs.

    The Trainer wraps every ``keras.callbacks.Callback`` it receives into one adapter, so that they
    share one logs dict of Python floats (a callback that adds a key, such as ``ReduceLROnPlateau``'s
    ``learning_rate``, is seen by the next one). Batch-level Keras hooks run (and read the metrics from
    the device) only when some Keras callback overrides them. Validation is reported to them as
    ``on_test_*`` calls, as ``fit`` does, and ``on_epoch_end`` comes after validation with ``val_*``.

    Args:
        callbacks: the Keras callbacks, in order.
    """

    def __init__(self, callbacks: Iterable[keras.callbacks.Callback]) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            _check_supported(callback)
        self.logs: dict = {}
        self._batch = {kind: [c for c in self.callbacks if _implements(c, names)]
                       for kind, names in _BATCH_HOOKS.items()}

    @property  # per instance: only Keras batch hooks need every batch
    def chunk_aware(self) -> bool:  # type: ignore[override]
        """Keras batch hooks expect every batch; without them chunks are fine."""
        return not (self._batch["train"] or self._batch["test"])

    @property
    def state_key(self) -> str:
        return "KerasCallbackAdapter[" + ",".join(type(c).__name__ for c in self.callbacks) + "]"

    def _refresh(self, trainer, *, strip: str = "") -> dict:
        self.logs.clear()
        for key, value in trainer.callback_metrics.items():
            if isinstance(value, float):
                self.logs[key[len(strip):] if strip and key.startswith(strip) else key] = value
        return self.logs

    def _each(self, hook, *args, targets=None) -> None:
        for callback in self.callbacks if targets is None else targets:
            getattr(callback, hook)(*args)

    @staticmethod
    def _check_stop(trainer, module) -> None:
        if getattr(module, "stop_training", False):
            trainer.should_stop = True

    def setup(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        params = {
            "verbose": 0,
            "epochs": trainer.max_epochs if (trainer.max_epochs or 0) >= 0 else None,
            "steps": trainer.num_training_batches,
        }
        for callback in self.callbacks:
            callback.set_model(module)
            callback.set_params(params)

    def on_train_start(self, trainer: Trainer, module: TrainModule) -> None:
        metrics = trainer.results.stage_metrics(TRAIN)
        for callback in self.callbacks:  # Keras reads the direction from compiled metrics
            if getattr(callback, "mode", None) == "auto" and isinstance(
                    getattr(callback, "monitor", None), str):
                callback.mode = _direction(metrics, callback.monitor) or "auto"
        module.stop_training = False
        self._each("on_train_begin", {})
        for callback in self.callbacks:  # `steps` is known only now
            callback.params["steps"] = trainer.num_training_batches

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        self.logs.clear()
        self._each("on_epoch_begin", trainer.current_epoch, self.logs)

    def on_train_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        if self._batch["train"]:
            self._each("on_train_batch_begin", batch_idx, {}, targets=self._batch["train"])

    def on_train_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                           batch_idx: int) -> None:
        if self._batch["train"]:
            logs = {k: v for k, v in self._refresh(trainer).items() if not k.startswith("val_")}
            self._each("on_train_batch_end", batch_idx, logs, targets=self._batch["train"])
            self._check_stop(trainer, module)

    def on_validation_start(self, trainer: Trainer, module: TrainModule) -> None:
        if not trainer.sanity_checking:
            self._each("on_test_begin", {})

    def on_validation_batch_start(self, trainer: Trainer, module: TrainModule,
                                  batch_idx: int) -> None:
        if self._batch["test"] and not trainer.sanity_checking:
            self._each("on_test_batch_begin", batch_idx, {}, targets=self._batch["test"])

    def on_validation_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                                batch_idx: int) -> None:
        if self._batch["test"] and not trainer.sanity_checking:
            logs = self._refresh(trainer, strip="val_")
            self._each("on_test_batch_end", batch_idx, logs, targets=self._batch["test"])

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        if not trainer.sanity_checking:
            self._each("on_test_end", {k[4:]: v for k, v in self._refresh(trainer).items()
                                       if k.startswith("val_")})

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._each("on_epoch_end", trainer.current_epoch, self._refresh(trainer))
        self._check_stop(trainer, module)

    def on_train_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._each("on_train_end", self._refresh(trainer))

    def on_test_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._each("on_test_begin", {})

    def on_test_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        if self._batch["test"]:
            self._each("on_test_batch_begin", batch_idx, {}, targets=self._batch["test"])

    def on_test_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                          batch_idx: int) -> None:
        if self._batch["test"]:
            logs = self._refresh(trainer, strip="test_")
            self._each("on_test_batch_end", batch_idx, logs, targets=self._batch["test"])

    def on_test_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._each("on_test_end", {k[5:]: v for k, v in self._refresh(trainer).items()
                                   if k.startswith("test_")})

    def on_predict_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._each("on_predict_begin", {})

    def on_predict_batch_start(self, trainer: Trainer, module: TrainModule, batch_idx: int) -> None:
        if self._batch["predict"]:
            self._each("on_predict_batch_begin", batch_idx, {}, targets=self._batch["predict"])

    def on_predict_batch_end(self, trainer: Trainer, module: TrainModule, outputs: Any,
                             batch_idx: int) -> None:
        if self._batch["predict"]:
            self._each("on_predict_batch_end", batch_idx, {"outputs": outputs},
                       targets=self._batch["predict"])

    def on_predict_end(self, trainer: Trainer, module: TrainModule) -> None:
        self._each("on_predict_end", {})
