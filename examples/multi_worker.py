"""Data-parallel training over several processes (MultiWorkerMirroredStrategy), resumable.

Start two local workers with the launcher (each gets its own TF_CONFIG):

    kerastrainer launch --nproc 2 examples/multi_worker.py runs/mw
    kerastrainer launch --nproc 2 --max-restarts 1 examples/multi_worker.py runs/mw --crash kill

Every worker ends with the same weights (written to OUT/weights-<rank>.npz); only the chief writes
logs and checkpoints. `--crash kill|term` makes worker 1 kill itself with SIGKILL or SIGTERM at step
`--at` on the first attempt, to show a restart (or a preemption save) resuming exactly; `--crash
stop` stops it (SIGSTOP) and `--crash hang` makes it sleep in a callback, two stalled peers: with
`kerastrainer launch --collective-timeout 20` the job fails after 20 s and the launcher names
worker 1. Without
TF_CONFIG the same script trains on one device, for comparison. The validation step logs its row
count twice: with `sync_dist=True` (all workers' rows) and without (this worker's rows).
"""

import argparse
import os
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

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

    def validation_step(self, batch, batch_idx):
        rows = keras.ops.cast(keras.ops.shape(batch[0])[0], "float32")
        self.log("val_rows", rows, reduce_fx="sum", sync_dist=True)  # added over all workers
        self.log("val_rows_here", rows, reduce_fx="sum")  # this worker's share only
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        self.log("val_top_replica", keras.ops.cast(replica, "float32"), reduce_fx="max",
                 sync_dist=True)  # the highest replica id of all workers
        return super().validation_step(batch, batch_idx)


class Crash(kt.Callback):
    """Worker 1, first attempt only: a signal to itself after optimizer step `at`."""

    def __init__(self, how, at):
        self.signum = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "stop": signal.SIGSTOP,
                       "hang": None}[how]
        self.at = at

    def on_train_batch_end(self, trainer, module, outputs, batch_idx):
        first_attempt = os.environ.get("KT_LAUNCH_ATTEMPT", "0") == "0"
        if trainer.global_rank == 1 and first_attempt and trainer.global_step == self.at:
            if self.signum is None:  # alive, heartbeats running, but never joins a collective
                time.sleep(3600)
            os.kill(os.getpid(), self.signum)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for checkpoints, logs and the final weights")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--crash", choices=("kill", "term", "stop", "hang"), default=None)
    parser.add_argument("--at", type=int, default=25, help="optimizer step of the crash")
    args = parser.parse_args()
    # Seeding and making tensors before the Trainer is fine: `kerastrainer launch` created the
    # strategy before this script started (TensorFlow needs it before its first op).
    kt.seed_everything(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(320, 8)), tf.float32)
    y = x @ tf.constant(rng.normal(size=(8, 1)), tf.float32)
    callbacks = [kt.callbacks.ModelCheckpoint(save_last=True, every_n_train_steps=10)]
    if args.crash:
        callbacks.append(Crash(args.crash, args.at))
    trainer = kt.Trainer(max_epochs=args.epochs, deterministic=True, default_root_dir=args.out,
                         callbacks=callbacks, enable_model_summary=False)
    module = Regressor()
    # The global batch is 32 rows, split over the replicas. "last" resumes after a restart (or
    # starts fresh, with a warning, when nothing was saved yet).
    trainer.fit(module, train_data=(x.numpy(), y.numpy()), val_data=(x[:64], y[:64]), batch_size=32,
                ckpt_path="last")
    np.savez(os.path.join(args.out, f"weights-{trainer.global_rank}.npz"), *module.get_weights())
    print(f"rank {trainer.global_rank} of {trainer.world_size} replicas: {trainer.global_step} steps, "
          f"val_loss {trainer.callback_metrics['val_loss']:.6f}, validation rows: "
          f"{trainer.callback_metrics['val_rows']:.0f} in all, "
          f"{trainer.callback_metrics['val_rows_here']:.0f} here; highest replica id "
          f"{trainer.callback_metrics['val_top_replica']:.0f}")


if __name__ == "__main__":
    main()
