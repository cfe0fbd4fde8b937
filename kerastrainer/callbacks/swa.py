"""StochasticWeightAveraging: an equal average of the weights of the last epochs (Izmailov et al.)."""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class StochasticWeightAveraging(Callback):
    """From epoch ``swa_epoch_start`` on, averages the trainable weights at the end of each epoch
    (equal weights, on the device); when training ends the module takes the average, and the
    statistics of its BatchNormalization layers are recomputed with one pass over the training
    data (Lightning's callback and arguments).

    With ``swa_lrs`` the learning rate anneals from its value at ``swa_epoch_start`` to ``swa_lrs``
    over ``annealing_epochs`` epochs (``"cos"`` or ``"linear"``), then stays there; the optimizer's
    ``learning_rate`` must be a number. Checkpoints written during the fit hold the raw training
    weights and this callback's average, so a resumed fit continues both exactly; save after the
    fit to keep the averaged module.

    Args:
        swa_lrs: the learning rate of the averaging epochs; ``None`` leaves it alone.
        swa_epoch_start: the first averaged epoch (0-based), or a fraction of ``max_epochs``.
        annealing_epochs: epochs to reach ``swa_lrs``.
        annealing_strategy: ``"cos"`` or ``"linear"``.

    Raises:
        ValueError: an argument out of range; at fit start, a fraction without ``max_epochs``.

    Examples:
        >>> swa = StochasticWeightAveraging(swa_lrs=1e-2, swa_epoch_start=0.75)
    """

    def __init__(self, *, swa_lrs: float | None = None, swa_epoch_start: int | float = 0.8,
                 annealing_epochs: int = 10, annealing_strategy: str = "cos") -> None:
        if swa_lrs is not None and (isinstance(swa_lrs, bool) or not isinstance(swa_lrs, numbers.Real)
                                    or not swa_lrs > 0):
            raise ValueError("StochasticWeightAveraging: `swa_lrs` must be a positive number or None. "
                             f"Received: swa_lrs={swa_lrs!r}")
        fraction = isinstance(swa_epoch_start, float)
        if isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)) or \
                (fraction and not 0 < swa_epoch_start <= 1) or (not fraction and swa_epoch_start < 0):
            raise ValueError("StochasticWeightAveraging: `swa_epoch_start` must be an epoch (int >= 0) "
                             f"or a fraction in (0, 1]. Received: swa_epoch_start={swa_epoch_start!r}")
        if isinstance(annealing_epochs, bool) or not isinstance(annealing_epochs, int) or annealing_epochs < 1:
            raise ValueError("StochasticWeightAveraging: `annealing_epochs` must be an integer >= 1. "
                             f"Received: annealing_epochs={annealing_epochs!r}")
        if annealing_strategy not in ("cos", "linear"):
            raise ValueError("StochasticWeightAveraging: `annealing_strategy` must be 'cos' or 'linear'. "
                             f"Received: annealing_strategy={annealing_strategy!r}")
        self.swa_lrs, self.swa_epoch_start = swa_lrs, swa_epoch_start
        self.annealing_epochs, self.annealing_strategy = annealing_epochs, annealing_strategy
        self.n_averaged = 0
        self._start = 0
        self._initial_lr: float | None = None
        self._variables: list = []
        self._average: list = []
        self._pending: dict | None = None

    def on_fit_start(self, trainer: Trainer, module: TrainModule) -> None:
        if isinstance(self.swa_epoch_start, float):
            if trainer.max_epochs is None or trainer.max_epochs < 0:
                raise ValueError("StochasticWeightAveraging: a fractional swa_epoch_start needs "
                                 "max_epochs; give the first averaged epoch as an int instead. Received: "
                                 f"swa_epoch_start={self.swa_epoch_start}, max_epochs={trainer.max_epochs}")
            self._start = max(int(trainer.max_epochs * self.swa_epoch_start) - 1, 0)
        else:
            self._start = self.swa_epoch_start
        self._variables = list(module.trainable_variables)
        self._average = [tf.Variable(v, trainable=False) for v in self._variables]
        if self._pending is not None:  # resumed
            self.n_averaged = int(self._pending["n_averaged"])
            for i, average in enumerate(self._average):
                if str(i) in self._pending.get("average", {}):
                    average.assign(self._pending["average"][str(i)])
            lr = float(self._pending.get("initial_lr", -1.0))
            self._initial_lr = lr if lr >= 0 else None
            self._pending = None

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        epoch = trainer.current_epoch
        if self.swa_lrs is None or epoch < self._start:
            return
        if self._initial_lr is None:
            self._initial_lr = float(keras.ops.convert_to_numpy(module.optimizer.learning_rate))
        t = min(1.0, (epoch - self._start + 1) / self.annealing_epochs)
        if self.annealing_strategy == "cos":
            t = (1 - math.cos(math.pi * t)) / 2
        module.optimizer.learning_rate = self._initial_lr + (self.swa_lrs - self._initial_lr) * t

    def on_train_epoch_end(self, trainer: Trainer, module: TrainModule) -> None:
        if trainer.current_epoch < self._start:
            return
        self.n_averaged += 1
        for variable, average in zip(self._variables, self._average):  # device-side
            average.assign_add((tf.cast(variable, average.dtype) - average) / self.n_averaged)

    def on_train_end(self, trainer: Trainer, module: TrainModule) -> None:
        if not self.n_averaged:
            return
        for variable, average in zip(self._variables, self._average):
            variable.assign(average)
        recompute_batch_norm(module, trainer.train_dataset)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_averaged": self.n_averaged,
                                 "initial_lr": -1.0 if self._initial_lr is None else self._initial_lr}
        if self._average:
            state["average"] = {str(i): np.asarray(a.numpy()) for i, a in enumerate(self._average)}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = dict(state_dict)


def recompute_batch_norm(module: Any, dataset: Any) -> None:
    """Sets every BatchNormalization layer's moving statistics to the mean of its batch
    statistics over ``dataset`` (one pass, the module in training mode), as after SWA the running
    averages belong to no weights the module has."""
    layers = [layer for layer in module._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers or dataset is None:
        return
    momenta = [layer.momentum for layer in layers]
    try:
        for count, batch in enumerate(dataset, start=1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / count  # a running mean of the batch statistics
            module(keras.utils.unpack_x_y_sample_weight(batch)[0], training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
