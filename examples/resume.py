"""Exact resume: a run killed mid-epoch and resumed from its last checkpoint ends bitwise equal to an
uninterrupted run (weights and optimizer state).

The script trains an uninterrupted run itself, then starts two child processes: a run that crashes
itself in the middle of epoch 2 (SIGKILL, or SIGTERM for a graceful stop that saves first), and a
fresh process resuming from `ckpt_path="last"`. Then it compares the results.

Run: python examples/resume.py [--data arrays|tfdata] [--steps-per-execution 3] [--crash term]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def build_module():
    import keras

    import kerastrainer as kt

    class ResumeNet(kt.TrainModule):
        """Dropout included: its random state must resume exactly too."""

        def __init__(self, units=16, lr=1e-2):
            super().__init__()
            self.save_hyperparameters()
            self.hidden = keras.layers.Dense(units, activation="relu")
            self.dropout = keras.layers.Dropout(0.2)
            self.out = keras.layers.Dense(3)

        def call(self, x, training=False):
            return self.out(self.dropout(self.hidden(x), training=training))

        def loss(self, y_true, y_pred):
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

        def configure_optimizer(self):
            return keras.optimizers.Adam(self.hparams.lr)

        def configure_metrics(self):
            return [keras.metrics.SparseCategoricalAccuracy(name="acc")]

    return ResumeNet()


def make_data(kind):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=80)
    x = (rng.normal(size=(80, 6)) + y[:, None]).astype("float32")
    if kind == "arrays":
        return (x[:60], y[:60]), (x[60:], y[60:])
    train = tf.data.Dataset.from_tensor_slices((x[:60], y[:60])).shuffle(60).batch(6)
    return train, tf.data.Dataset.from_tensor_slices((x[60:], y[60:])).batch(6)


def child(args) -> None:
    """One run: `full`, `crash` or `resume`; writes its final state to <workdir>/<role>.npz."""
    import kerastrainer as kt

    class Crash(kt.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch_idx):
            # One compiled call after the last step checkpoint, in the middle of the second epoch.
            if trainer.current_epoch == 1 and batch_idx >= 4:
                os.kill(os.getpid(), signal.SIGKILL if args.crash == "kill" else signal.SIGTERM)

    kt.seed_everything(7)
    module = build_module()
    train, val = make_data(args.data)
    callbacks: list[kt.Callback] = [kt.callbacks.ModelCheckpoint(
        dirpath=os.path.join(args.workdir, "checkpoints"), every_n_train_steps=4, save_last=True)]
    if args.role == "crash":
        callbacks.insert(0, Crash())
    trainer = kt.Trainer(max_epochs=args.epochs, deterministic=True, callbacks=callbacks,
                         steps_per_execution=args.steps_per_execution, val_check_interval=0.5,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_data=train, val_data=val,
                batch_size=6 if args.data == "arrays" else None,
                ckpt_path="last" if args.role == "resume" else None)
    state = [w for w in module.get_weights()] + [v.numpy() for v in module.optimizer.variables]
    np.savez(os.path.join(args.workdir, f"{args.role}.npz"), *state, global_step=trainer.global_step)


def main(argv=None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", choices=["arrays", "tfdata"], default="arrays")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--crash", choices=["kill", "term"], default="kill")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--role", choices=["full", "crash", "resume"], default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        child(args)
        return True

    workdir = args.workdir or tempfile.mkdtemp(prefix="kt-resume-")
    base = [sys.executable, os.path.abspath(__file__), "--workdir", workdir, "--epochs",
            str(args.epochs), "--data", args.data, "--steps-per-execution",
            str(args.steps_per_execution), "--crash", args.crash]
    child(argparse.Namespace(**{**vars(args), "workdir": workdir, "role": "full"}))
    print("  full run (this process) done")
    for role, expected in (("crash", -9 if args.crash == "kill" else 143), ("resume", 0)):
        code = subprocess.run(base + ["--role", role]).returncode
        print(f"{role:>6} run exited with {code}")
        if code != expected:
            raise SystemExit(f"the {role} run exited with {code}, expected {expected}")
    full = np.load(os.path.join(workdir, "full.npz"))
    resumed = np.load(os.path.join(workdir, "resume.npz"))
    same = all(np.array_equal(full[k], resumed[k]) for k in full.files)
    print(f"resumed run == uninterrupted run (bitwise, {len(full.files)} arrays): {same}")
    return same


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
