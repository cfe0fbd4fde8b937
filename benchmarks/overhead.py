"""Epoch time of kerastrainer next to a hand-written @tf.function loop and keras.Model.fit.

Same MLP (784-128-10), same synthetic data, same optimizer, one process, interleaved repetitions,
medians. Run: `make bench` or `python benchmarks/overhead.py --rows 60000 --repeats 5`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerastrainer as kt  # noqa: E402


def make_layers():
    return [keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]


class Mlp(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = make_layers()

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(1e-3)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


class EpochTimer(kt.Callback):
    def __init__(self):
        self.times = []

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.times.append(time.perf_counter() - self._start)


class KerasEpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def dataset(x, y, batch):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(tf.data.AUTOTUNE)


def hand_written(x, y, batch, epochs):
    """The course notes' loop: one @tf.function call per step, metrics reset every epoch."""
    model = keras.Sequential([keras.Input((x.shape[1],)), *make_layers()])
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_loss = keras.metrics.Mean()
    train_acc = keras.metrics.SparseCategoricalAccuracy()
    ds = dataset(x, y, batch)

    @tf.function
    def train_step(images, targets):
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss = loss_fn(targets, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        train_loss(loss)
        train_acc(targets, predictions)

    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, targets in ds:
            train_step(images, targets)
        float(train_loss.result())  # the epoch's value reaches Python once
        train_loss.reset_state()
        train_acc.reset_state()
        times.append(time.perf_counter() - start)
    return times


def keras_fit(x, y, batch, epochs):
    model = keras.Sequential([keras.Input((x.shape[1],)), *make_layers()])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    timer = KerasEpochTimer()
    model.fit(dataset(x, y, batch), epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
    return timer.times


def kerastrainer_fit(x, y, batch, epochs, **flags):
    timer = EpochTimer()
    trainer = kt.Trainer(max_epochs=epochs, callbacks=[timer], enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, **flags)
    trainer.fit(Mlp(), train_data=dataset(x, y, batch))
    return timer.times


VARIANTS = {
    "hand-written @tf.function loop": hand_written,
    "keras Model.fit": keras_fit,
    "kerastrainer (defaults, no bar)": kerastrainer_fit,
    "kerastrainer steps_per_execution=32": lambda *a: kerastrainer_fit(*a, steps_per_execution=32),
    "kerastrainer accumulate_grad_batches=4": lambda *a: kerastrainer_fit(*a, accumulate_grad_batches=4),
}
# float16 has no fast CPU kernels (about 45x slower than float32 on the 2-core machines here);
# bfloat16 is the mixed policy that CPUs run well.
MIXED = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
VARIANTS[f"kerastrainer precision={MIXED}"] = lambda *a: kerastrainer_fit(*a, precision=MIXED)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is compile time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 784)).astype("float32")
    y = rng.integers(0, 10, size=args.rows)
    steady = {name: [] for name in VARIANTS}
    first = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
        for name, run in VARIANTS.items():
            keras.backend.clear_session()
            times = run(x, y, args.batch, args.epochs)
            first[name].append(times[0])
            steady[name].extend(times[1:])
    base = statistics.median(steady["hand-written @tf.function loop"])
    print(f"rows={args.rows} batch={args.batch} epochs/run={args.epochs} repeats={args.repeats} "
          f"threads intra/inter={tf.config.threading.get_intra_op_parallelism_threads()}/"
          f"{tf.config.threading.get_inter_op_parallelism_threads()} (0 = TF default)")
    print(f"{'variant':40s} {'epoch s (median)':>17s} {'vs hand-written':>16s} {'first epoch s':>14s}")
    for name in VARIANTS:
        median = statistics.median(steady[name])
        print(f"{name:40s} {median:17.3f} {median / base:15.2f}x {statistics.median(first[name]):14.2f}")


if __name__ == "__main__":
    main()
