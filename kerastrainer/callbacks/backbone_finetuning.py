"""BackboneFinetuning: train the head first, then unfreeze the backbone with a lower learning rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from kerastrainer.callbacks.base import Callback

if TYPE_CHECKING:
    from kerastrainer.module import TrainModule
    from kerastrainer.trainer import Trainer


class BackboneFinetuning(Callback):
    """Freezes ``module.<backbone>`` when fit starts and unfreezes it at ``unfreeze_backbone_at_epoch``,
    multiplying the optimizer's learning rate by ``lr_factor`` then.

    Keras optimizers have one learning rate, so the whole model continues with the reduced rate
    (Lightning gives the backbone its own parameter group instead). The training step is traced
    again exactly once, at the epoch where trainability changes.

    Args:
        unfreeze_backbone_at_epoch: the epoch (from 0) at which the backbone becomes trainable.
        backbone: the attribute of the module holding the backbone layer or model.
        lr_factor: the learning-rate multiplier applied when unfreezing.

    Raises:
        AttributeError: the module has no such attribute (raised when fit starts).

    Examples:
        >>> finetune = BackboneFinetuning(unfreeze_backbone_at_epoch=5, lr_factor=0.1)
    """

    def __init__(self, *, unfreeze_backbone_at_epoch: int = 10, backbone: str = "backbone",
                 lr_factor: float = 0.1) -> None:
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.backbone = backbone
        self.lr_factor = lr_factor

    def _backbone(self, module):
        layer = getattr(module, self.backbone, None)
        if not isinstance(layer, keras.layers.Layer):
            raise AttributeError(
                f"BackboneFinetuning: {type(module).__name__} has no layer attribute "
                f"{self.backbone!r}. Pass backbone='<attribute name>'.")
        return layer

    def on_fit_start(self, trainer: Trainer, module: TrainModule) -> None:
        if trainer.current_epoch < self.unfreeze_backbone_at_epoch:  # also right after a resume
            module.freeze(self._backbone(module))

    def on_train_epoch_start(self, trainer: Trainer, module: TrainModule) -> None:
        if trainer.current_epoch == self.unfreeze_backbone_at_epoch:
            module.unfreeze(self._backbone(module))
            optimizer = module.optimizer
            current = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            optimizer.learning_rate = current * self.lr_factor
