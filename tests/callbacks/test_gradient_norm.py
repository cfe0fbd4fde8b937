import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _first_gradients(module, x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, module(x)))
    return tape.gradient(loss, module.trainable_variables)


@pytest.mark.parametrize("precision", ["32", "mixed_float16"])
def test_norms_are_those_of_the_step_gradients_loss_scaling_undone(precision):
    x, y = regression_data(8)
    module = BoringModule()
    module(x[:1])
    gradients = _first_gradients(module, x, y)
    monitor = kt.callbacks.GradientNormMonitor()
    trainer = quiet_trainer(max_steps=1, log_every_n_steps=1, callbacks=[monitor], precision=precision)
    trainer.fit(module, train_data=(x, y), batch_size=8, shuffle=False)
    metrics = trainer.callback_metrics
    tolerance = 1e-5 if precision == "32" else 2e-2  # float16 compute
    assert metrics["grad_2.0_norm_total"] == pytest.approx(float(tf.linalg.global_norm(gradients)),
                                                           rel=tolerance)
    assert metrics["grad_2.0_norm/hidden/kernel"] == pytest.approx(
        float(np.linalg.norm(gradients[0].numpy().ravel())), rel=tolerance)


@pytest.mark.parametrize("norm_type, reduce", [(1, np.sum), ("inf", np.max)])
def test_other_norms_over_all_entries(norm_type, reduce):
    x, y = regression_data(8)
    module = BoringModule()
    module(x[:1])
    entries = np.abs(np.concatenate([g.numpy().ravel() for g in _first_gradients(module, x, y)]))
    monitor = kt.callbacks.GradientNormMonitor(norm_type=norm_type, per_variable=False)
    trainer = quiet_trainer(max_steps=1, log_every_n_steps=1, callbacks=[monitor])
    trainer.fit(module, train_data=(x, y), batch_size=8, shuffle=False)
    key = f"grad_{monitor.norm_type}_norm_total"
    assert trainer.callback_metrics[key] == pytest.approx(float(reduce(entries)), rel=1e-5)
    assert not [k for k in trainer.callback_metrics if k.startswith(f"grad_{monitor.norm_type}_norm/")]


def test_a_bad_norm_type_is_refused():
    with pytest.raises(ValueError, match=r"`norm_type` must be 1, 2 or 'inf'. Received: norm_type=3"):
        kt.callbacks.GradientNormMonitor(norm_type=3)
