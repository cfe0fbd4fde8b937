import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import BoringClassifier, classification_data, quiet_trainer


class Recording(BoringClassifier):
    seen = []

    def call(self, x, training=False):
        out = super().call(x, training=training)
        Recording.seen.append(out.dtype)
        return out


@pytest.mark.parametrize(("precision", "compute", "scaled"), [
    ("mixed_float16", tf.float16, True),
    ("bf16-mixed", tf.bfloat16, False),
])
def test_mixed_precision_runs_and_is_restored(precision, compute, scaled):
    Recording.seen = []
    x, y = classification_data(rows=48)
    module = Recording()
    trainer = quiet_trainer(max_epochs=6, precision=precision, gradient_clip_val=5.0)
    trainer.fit(module, train_data=(x, y), val_data=(x[:16], y[:16]), batch_size=8)
    assert compute in Recording.seen
    assert isinstance(module.optimizer, keras.optimizers.LossScaleOptimizer) is scaled
    assert all(w.dtype == np.float32 for w in module.get_weights())
    metrics = trainer.callback_metrics
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert metrics["acc"] > 0.6
    assert keras.config.dtype_policy().name == "float32"
    assert module.out.compute_dtype == "float32"  # the run's policy does not outlive it
    assert module(x[:2]).dtype == tf.float32


def test_bad_precision():
    with pytest.raises(ValueError, match=r"Received: precision='16'"):
        quiet_trainer(precision="16")
