"""EMA: an exponential moving average of the weights, used for evaluation and saved checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from kerastrainer.callbacks.base import Callback
from kerastrainer.checkpoint_io import nest
from kerastrainer.variable_paths import variable_paths

if TYPE_CHECKING:
    import keras

    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class EMA(Callback):
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` on the device, updated every training step
    inside the compiled step, and swaps the averaged weights in for validation, test, predict and
    the saved checkpoint's ``weights``.

    The raw training weights are kept in this callback's checkpoint state, so resuming continues
    training from them exactly; ``load_from_checkpoint`` and exports get the averaged weights.

    The update is traced into the training step (``on_before_optimizer_step``): it folds in the
    weights as they are before each step, and the swap folds in the current ones, so the weights
    used for evaluation are the average through the latest step. With ``accumulate_grad_batches``
    the average is updated every batch.

    Args:
        decay: the averaging factor, in [0, 1).

    Examples:
        >>> ema = EMA(decay=0.999)
    """

    def __init__(self, *, decay: float = 0.999) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA: `decay` must be in [0, 1). Received: decay={decay!r}")
        self.decay = decay
        self._variables: list = []
        self._ema: list = []
        self._backup: list = []
        self._pending: dict | None = None

    def on_fit_start(self, trainer: Trainer, module: TrainModule) -> None:
        self._variables = list(module.trainable_variables)
        self._ema = [tf.Variable(v, trainable=False) for v in self._variables]
        self._backup = [tf.Variable(v, trainable=False) for v in self._variables]
        if self._pending is not None:  # resumed: the checkpoint's `weights` were the averages
            for i, (variable, ema) in enumerate(zip(self._variables, self._ema)):
                ema.assign(self._pending["ema"][str(i)])
                variable.assign(self._pending["raw"][str(i)])
            self._pending = None

    def on_before_optimizer_step(self, trainer: Trainer, module: TrainModule,
                                 optimizer: keras.optimizers.Optimizer) -> None:
        for variable, ema in zip(self._variables, self._ema):  # traced: runs every step in-graph
            ema.assign(self.decay * ema + (1.0 - self.decay) * tf.cast(variable, ema.dtype))

    def averaged_weights(self) -> list:
        """The averages through the latest step, as NumPy arrays (in ``trainable_variables`` order)."""
        return [np.asarray(self.decay * ema + (1.0 - self.decay) * v)
                for v, ema in zip(self._variables, self._ema)]

    def _swap_in(self):
        for variable, ema, backup in zip(self._variables, self._ema, self._backup):
            backup.assign(variable)
            variable.assign(self.decay * ema + (1.0 - self.decay) * variable)

    def _swap_out(self):
        for variable, backup in zip(self._variables, self._backup):
            variable.assign(backup)

    def on_validation_start(self, trainer: Trainer, module: TrainModule) -> None:
        if self._ema:
            self._swap_in()

    def on_validation_end(self, trainer: Trainer, module: TrainModule) -> None:
        if self._ema:
            self._swap_out()

    on_test_start = on_predict_start = on_validation_start
    on_test_end = on_predict_end = on_validation_end

    def state_dict(self) -> dict:
        if not self._ema:
            return {"decay": self.decay}
        return {"decay": self.decay,
                "ema": {str(i): np.asarray(e.numpy()) for i, e in enumerate(self._ema)},
                "raw": {str(i): np.asarray(v.numpy()) for i, v in enumerate(self._variables)}}

    def load_state_dict(self, state_dict: dict) -> None:
        if "ema" in state_dict:
            self._pending = {"ema": state_dict["ema"], "raw": state_dict["raw"]}

    def on_save_checkpoint(self, trainer: Trainer, module: TrainModule, checkpoint: dict) -> None:
        if not self._ema:
            return
        index = {id(v): i for i, v in enumerate(self._variables)}
        averaged = self.averaged_weights()
        weights = {path: (averaged[index[id(var)]] if id(var) in index else np.asarray(var.numpy()))
                   for path, var in variable_paths(module).items()}
        checkpoint["weights"] = nest(weights)
