"""Runs under two logical CPU devices (set before TensorFlow starts, so in its own process).

Trains the same module on one device and under MirroredStrategy, from arrays (the in-memory path)
and from a tf.data dataset, and prints what tests/distributed/test_mirrored.py checks, as JSON.
Run from the repository root: python -m tests.distributed.mirrored_run
"""

import json
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerastrainer as kt  # noqa: E402
from tests.helpers import BoringModule  # noqa: E402


class ReplicaLogger(BoringModule):
    """Logs the replica id, so that the way values of several replicas combine can be seen."""

    def training_step(self, batch, batch_idx):
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, "float32")
        for fx in ("max", "min", "sum", "mean"):
            self.log(f"replica_{fx}", replica, on_step=True, on_epoch=False, reduce_fx=fx)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        rows = keras.ops.cast(keras.ops.shape(batch[0])[0], "float32")
        self.log("val_rows", rows, reduce_fx="sum", sync_dist=True)
        self.log("val_rows_max", rows, reduce_fx="max")  # the largest share of one replica
        return super().validation_step(batch, batch_idx)


def train(strategy, as_dataset, rows=331, several=False):
    keras.backend.clear_session()
    kt.seed_everything(0)
    rng = np.random.default_rng(0)
    # 331 rows: the last batch (11 rows) splits 5 + 6; 33 rows: 1 row, one replica gets none
    x = rng.normal(size=(rows, 4)).astype("float32")
    y = x @ rng.normal(size=(4, 1)).astype("float32")
    val = (x[:75], y[:75])
    train_data = (x, y)
    if as_dataset:
        train_data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        val = tf.data.Dataset.from_tensor_slices(val).batch(32)
    if several:  # two validation sets: each its own values, on every replica
        val = [val, (x[75:150], y[75:150] * 2.0)]
    trainer = kt.Trainer(strategy=strategy, max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    module = ReplicaLogger()
    trainer.fit(module, train_data=train_data, val_data=val,
                batch_size=None if as_dataset else 32)
    feeds = {key[1] for key in trainer._steps.functions if isinstance(key, tuple)}
    metrics = {k: v for k, v in trainer.callback_metrics.items() if isinstance(v, float)}
    return {"weights": [w.tolist() for w in module.get_weights()], "feeds": sorted(feeds),
            "metrics": metrics, "world_size": trainer.world_size, "steps": trainer.global_step,
            "jit": trainer.step_tuner.reason}


def xla_warnings():
    x = np.zeros((8, 4), "float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kt.Trainer(strategy="mirrored", jit_compile=True, max_epochs=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).fit(ReplicaLogger(), train_data=(x, x[:, :1]),
                                                   batch_size=4)
    return [str(w.message) for w in caught if "jit_compile" in str(w.message)]


if __name__ == "__main__":
    runs = {f"{strategy}/{'dataset' if as_dataset else 'arrays'}": train(strategy, as_dataset)
            for strategy in ("one_device", "mirrored") for as_dataset in (False, True)}
    runs.update({f"{strategy}/{'dataset' if as_dataset else 'arrays'}/33": train(strategy, as_dataset, 33)
                 for strategy in ("one_device", "mirrored") for as_dataset in (False, True)})
    runs.update({f"{strategy}/several": train(strategy, False, several=True)
                 for strategy in ("one_device", "mirrored")})
    runs["xla_warnings"] = xla_warnings()
    json.dump(runs, sys.stdout)
