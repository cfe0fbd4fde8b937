"""GradientNormMonitor: gradient norms logged from inside the compiled training step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import tensorflow as tf

from kerastrainer.callbacks.base import Callback
from kerastrainer.variable_paths import variable_paths

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class GradientNormMonitor(Callback):
    """Logs the norm of all gradients together (``grad_2.0_norm_total``) and, with
    ``per_variable``, of each variable's (``grad_2.0_norm/hidden/kernel``: the module's attribute
    path), Lightning's names. The norms are computed in the compiled step (``on_after_backward``)
    and logged there, so they reach the host only when the loggers or the progress bar read, at
    their interval. Loss scaling is undone first; the norms are those before gradient clipping.

    Args:
        norm_type: the p of the p-norm: ``1``, ``2`` or ``"inf"``, over each gradient's entries.
        per_variable: also log each variable's norm.

    Raises:
        ValueError: another ``norm_type``.

    Examples:
        >>> monitor = GradientNormMonitor(norm_type=2, per_variable=False)
    """

    def __init__(self, *, norm_type: float | str = 2.0, per_variable: bool = True) -> None:
        if norm_type in ("inf", math.inf):
            self.norm_type: float = math.inf
        elif norm_type in (1, 2) and not isinstance(norm_type, bool):
            self.norm_type = float(norm_type)
        else:
            raise ValueError("GradientNormMonitor: `norm_type` must be 1, 2 or 'inf'. "
                             f"Received: norm_type={norm_type!r}")
        self.per_variable = per_variable
        self._names: dict[int, str] | None = None

    @property
    def prefix(self) -> str:
        return f"grad_{self.norm_type}_norm"

    def setup(self, trainer: Trainer, module: TrainModule, stage: str) -> None:
        self._names = {id(variable): path for path, variable in variable_paths(module).items()}

    def _norm(self, values):
        if self.norm_type == math.inf:
            return tf.reduce_max(tf.abs(values))
        if self.norm_type == 1.0:
            return tf.reduce_sum(tf.abs(values))
        return tf.sqrt(tf.reduce_sum(tf.square(values)))

    def on_after_backward(self, trainer: Trainer, module: TrainModule, gradients: list,
                          variables: list) -> None:
        names = self._names or {}
        norms = []
        for gradient, variable in zip(gradients, variables):
            if gradient is None:
                continue
            norm = self._norm(tf.reshape(tf.cast(tf.convert_to_tensor(gradient), tf.float32), [-1]))
            norms.append(norm)
            if self.per_variable:
                module.log(f"{self.prefix}/{names.get(id(variable), variable.path)}", norm)
        if norms:
            module.log(f"{self.prefix}_total", self._norm(tf.stack(norms)))
