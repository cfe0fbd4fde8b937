import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


class WithBatchNorm(BoringModule):
    """Dense -> BatchNormalization -> Dense: SWA must recompute the normalisation statistics."""

    def __init__(self):
        super().__init__()
        self.norm = keras.layers.BatchNormalization()

    def call(self, x, training=False):
        return self.out(self.norm(self.hidden(x), training=training))


class EpochWeights(kt.Callback):
    def __init__(self):
        self.weights = []

    def on_train_epoch_end(self, trainer, module):
        self.weights.append([v.numpy() for v in module.trainable_variables])


def test_the_module_ends_with_the_average_of_the_swa_epochs_and_fresh_batch_norm_statistics():
    x, y = regression_data(32)
    record = EpochWeights()
    swa = kt.callbacks.StochasticWeightAveraging(swa_epoch_start=2)
    module = WithBatchNorm()
    trainer = quiet_trainer(max_epochs=4, callbacks=[record, swa])
    trainer.fit(module, train_data=(x, y), batch_size=8, shuffle=False)
    assert swa.n_averaged == 2
    expected = [(a + b) / 2 for a, b in zip(record.weights[2], record.weights[3])]
    for variable, value in zip(module.trainable_variables, expected):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6, atol=1e-7)
    hidden = np.concatenate([module.hidden(x[i:i + 8]).numpy()[None] for i in range(0, 32, 8)])
    np.testing.assert_allclose(module.norm.moving_mean.numpy(), hidden.mean(axis=1).mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert module.norm.momentum == 0.99  # put back


@pytest.mark.parametrize("strategy, lrs", [("linear", [0.05, 0.04, 0.03, 0.02, 0.02]),
                                           ("cos", [0.05, 0.0425, 0.0275, 0.02, 0.02])])
def test_the_rate_anneals_to_swa_lrs(strategy, lrs):
    class Rates(kt.Callback):
        seen = []

        def on_train_batch_start(self, trainer, module, batch_idx):
            if batch_idx == 0:
                self.seen.append(round(float(module.optimizer.learning_rate), 6))

    Rates.seen = []
    swa = kt.callbacks.StochasticWeightAveraging(swa_lrs=0.02, swa_epoch_start=1, annealing_epochs=3,
                                                 annealing_strategy=strategy)
    quiet_trainer(max_epochs=5, callbacks=[swa, Rates()]).fit(
        BoringModule(lr=0.05), train_data=regression_data(8), batch_size=4)
    assert Rates.seen == pytest.approx(lrs, rel=1e-4)


def test_resume_continues_the_average_exactly(tmp_path):
    x, y = regression_data(16)

    def run(epochs, ckpt_path=None):
        keras.utils.set_random_seed(0)
        swa = kt.callbacks.StochasticWeightAveraging(swa_epoch_start=1)
        checkpoint = kt.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"), save_top_k=-1,
                                                  filename="{epoch}")
        module = BoringModule()
        trainer = quiet_trainer(max_epochs=epochs, callbacks=[swa, checkpoint])
        trainer.fit(module, train_data=(x, y), batch_size=4, ckpt_path=ckpt_path)
        return module, swa

    whole, _ = run(4)
    resumed, swa = run(4, ckpt_path=str(tmp_path / "ck" / "epoch=1.ckpt"))
    assert swa.n_averaged == 3
    for a, b in zip(whole.trainable_variables, resumed.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kwargs, match", [
    ({"swa_lrs": 0}, r"`swa_lrs` must be a positive number or None. Received: swa_lrs=0"),
    ({"swa_epoch_start": 1.5}, r"Received: swa_epoch_start=1.5"),
    ({"annealing_strategy": "step"}, r"Received: annealing_strategy='step'"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.callbacks.StochasticWeightAveraging(**kwargs)
