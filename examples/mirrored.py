"""Data-parallel training on one host: the same TrainModule under MirroredStrategy.

Without GPUs the CPU is split into two logical devices (this must happen before TensorFlow starts),
so the example runs anywhere. The mirrored run and a single-device run see the same global batches
and end with the same weights, up to float rounding.

    python examples/mirrored.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

if not tf.config.list_physical_devices("GPU"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerastrainer as kt  # noqa: E402


class Regressor(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.Adam(1e-2)

    def configure_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]


def train(strategy):
    keras.backend.clear_session()
    kt.seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 8)).astype("float32")
    y = x @ rng.normal(size=(8, 1)).astype("float32")
    trainer = kt.Trainer(strategy=strategy, max_epochs=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    module = Regressor()
    trainer.fit(module, train_data=(x, y), val_data=(x[:64], y[:64]), batch_size=32)  # global batch
    return module.get_weights(), trainer


if __name__ == "__main__":
    single, one = train("auto")
    mirrored, two = train("mirrored")
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored))
    print(f"replicas: {one.world_size} vs {two.world_size}; optimizer steps: {one.global_step} vs "
          f"{two.global_step}")
    print(f"val_mae: {one.callback_metrics['val_mae']:.6f} vs {two.callback_metrics['val_mae']:.6f}")
    print(f"largest weight difference, mirrored vs single device: {difference:.2e}")
