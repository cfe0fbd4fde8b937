import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import quiet_trainer, regression_data


class WithBackbone(kt.TrainModule):
    def __init__(self, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = keras.Sequential([keras.layers.Dense(4, activation="tanh")])
        self.head = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.head(self.backbone(x, training=training))

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.Adam(self.hparams.lr)


class Snapshots(kt.Callback):
    def __init__(self):
        self.backbone, self.traces = [], []

    def on_train_epoch_end(self, trainer, module):
        self.backbone.append([w.copy() for w in module.backbone.get_weights()])
        self.traces.append(trainer.trace_counts["train"])


def test_freeze_keeps_weights_and_unfreeze_trains_them():
    module = WithBackbone()
    module.freeze(module.backbone)
    snaps = Snapshots()
    trainer = quiet_trainer(max_epochs=2, callbacks=[snaps])
    trainer.fit(module, train_data=regression_data(16), batch_size=4)
    for a, b in zip(*snaps.backbone):
        np.testing.assert_array_equal(a, b)
    module.unfreeze()
    quiet_trainer(max_epochs=1).fit(module, train_data=regression_data(16), batch_size=4)
    assert not np.array_equal(module.backbone.get_weights()[0], snaps.backbone[-1][0])


@pytest.mark.parametrize("accumulate", [1, 2])
def test_backbone_finetuning_unfreezes_with_a_lower_lr_and_retraces_once(accumulate):
    snaps = Snapshots()
    finetune = kt.callbacks.BackboneFinetuning(unfreeze_backbone_at_epoch=2, lr_factor=0.1)
    trainer = quiet_trainer(max_epochs=4, callbacks=[finetune, snaps],
                            accumulate_grad_batches=accumulate)
    module = WithBackbone()
    trainer.fit(module, train_data=regression_data(16), batch_size=4)
    frozen_0, frozen_1, open_2, _ = snaps.backbone
    for a, b in zip(frozen_0, frozen_1):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(frozen_1[0], open_2[0])
    assert float(module.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert snaps.traces[1] == snaps.traces[0] and snaps.traces[2] == snaps.traces[1] + 1
    assert snaps.traces[3] == snaps.traces[2]


def test_backbone_finetuning_needs_the_attribute():
    finetune = kt.callbacks.BackboneFinetuning(backbone="encoder")
    with pytest.raises(AttributeError, match="has no layer attribute 'encoder'"):
        quiet_trainer(max_epochs=1, callbacks=[finetune]).fit(WithBackbone(), train_data=regression_data(8))


def test_manual_optimizers_must_be_built():
    class Manual(WithBackbone):
        automatic_optimization = False

        def configure_optimizer(self):
            return {"a": keras.optimizers.SGD(), "b": keras.optimizers.SGD()}

    with pytest.raises(ValueError, match=r"each optimizer is built when training_step first applies "
                                         r"it; \['a', 'b'\] were never applied there"):
        quiet_trainer(max_epochs=1).fit(Manual(), train_data=regression_data(8))
