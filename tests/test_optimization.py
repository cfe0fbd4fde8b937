import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _weights(trainer_flags, rows=16, batch_size=4, epochs=1, module=None, **fit):
    keras.backend.clear_session()
    kt.seed_everything(5)
    module = module or BoringModule(lr=0.1)
    x, y = regression_data(rows)
    trainer = quiet_trainer(max_epochs=epochs, **trainer_flags)
    trainer.fit(module, train_data=tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size), **fit)
    return [w.copy() for w in module.get_weights()], trainer


def test_accumulation_matches_one_step_on_the_concatenated_batch():
    accumulated, trainer = _weights({"accumulate_grad_batches": 4}, batch_size=4)
    single, _ = _weights({}, batch_size=16)
    assert trainer.global_step == 1
    for a, b in zip(accumulated, single):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("spe", [1, 3])
def test_global_step_counts_optimizer_steps_not_batches(spe):
    batches = []

    class Count(kt.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch_idx):
            batches.append(batch_idx)

    _, trainer = _weights({"accumulate_grad_batches": 4, "steps_per_execution": spe,
                           "callbacks": [Count()]}, rows=40, epochs=2)
    # 10 batches per epoch: steps after batches 4 and 8, plus the leftover 2 at the epoch end
    assert trainer.global_step == 6
    assert int(trainer.module.optimizer.iterations.numpy()) == 6
    assert batches[-1] == 9 and (len(batches) == 20 if spe == 1 else True)


def test_accumulation_with_max_steps():
    _, trainer = _weights({"accumulate_grad_batches": 2, "max_steps": 3}, rows=40, epochs=5)
    assert trainer.global_step == 3 and int(trainer.module.optimizer.iterations.numpy()) == 3


def test_accumulation_resumes_exactly(tmp_path):
    saver = kt.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, filename="{step}",
                                         save_top_k=-1)
    full, _ = _weights({"accumulate_grad_batches": 3, "deterministic": True, "callbacks": [saver]},
                       rows=40, epochs=2)
    resumed, trainer = _weights({"accumulate_grad_batches": 3, "deterministic": True}, rows=40, epochs=2,
                                ckpt_path=str(tmp_path / "step=2.ckpt"))
    assert trainer.global_step == 8
    for a, b in zip(full, resumed):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(("algorithm", "check"), [
    ("norm", lambda deltas: np.sqrt(sum(float(np.sum(d ** 2)) for d in deltas)) <= 1e-3 + 1e-7),
    ("value", lambda deltas: max(float(np.max(np.abs(d))) for d in deltas) <= 1e-3 + 1e-7),
])
def test_gradient_clipping(algorithm, check):
    keras.backend.clear_session()
    kt.seed_everything(5)
    module = BoringModule(lr=1.0)
    x, y = regression_data(8)
    module(x)
    before = [w.copy() for w in module.get_weights()]
    trainer = quiet_trainer(max_epochs=1, gradient_clip_val=1e-3, gradient_clip_algorithm=algorithm)
    trainer.fit(module, train_data=(x, y * 100), batch_size=8)
    deltas = [a - b for a, b in zip(module.get_weights(), before)]
    assert check(deltas) and max(float(np.max(np.abs(d))) for d in deltas) > 0


def test_clipping_conflicts_with_an_optimizer_that_clips():
    class Clipping(BoringModule):
        def configure_optimizer(self):
            return keras.optimizers.SGD(0.1, clipnorm=1.0)

    with pytest.raises(ValueError, match="the optimizer already clips"):
        quiet_trainer(max_epochs=1, gradient_clip_val=0.5).fit(Clipping(), train_data=regression_data(8))


@pytest.mark.parametrize(("flags", "error", "match"), [
    ({"accumulate_grad_batches": 0}, ValueError, "Received: accumulate_grad_batches=0"),
    ({"gradient_clip_val": -1.0}, ValueError, r"Received: gradient_clip_val=-1.0"),
    ({"gradient_clip_val": "1"}, TypeError, r"Received: gradient_clip_val='1'"),
    ({"gradient_clip_algorithm": "l2"}, ValueError, r"Received: gradient_clip_algorithm='l2'"),
])
def test_bad_optimization_flags(flags, error, match):
    with pytest.raises(error, match=match):
        kt.Trainer(**flags)


class GoesNaN(BoringModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * tf.where(batch_idx >= 2, np.nan, 1.0)


@pytest.mark.parametrize("how", ["flag", "callback"])
def test_non_finite_loss_stops_with_the_step_named(how):
    flags = {"detect_anomaly": True} if how == "flag" else {"callbacks": [kt.callbacks.TerminateOnNaN()]}
    trainer = quiet_trainer(max_epochs=2, **flags)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"^detect_anomaly: the loss is not finite at global step 3 - loss: nan\n"):
        trainer.fit(GoesNaN(), train_data=regression_data(32), batch_size=4)
    assert trainer.global_step == 2


def test_non_finite_gradient_names_the_variable():
    class BadGradient(BoringModule):
        def call(self, x, training=False):
            return self.out(tf.sqrt(self.hidden(x) - 10.0))  # NaN forward and backward

        def loss(self, y_true, y_pred):
            return keras.ops.mean(keras.ops.where(keras.ops.isnan(y_pred), 0.0, y_pred))

    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"^detect_anomaly: the gradient of \S+/(kernel|bias) is not finite at global step 1\n"):
        quiet_trainer(max_epochs=1, detect_anomaly=True).fit(BadGradient(), train_data=regression_data(8))
