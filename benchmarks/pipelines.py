"""kerastrainer on the inputs real projects use, against ``Model.fit`` and against itself.

Each row is measured in this one process and printed with its target, ok or MISSED:

- ``pydataset``: a ``keras.utils.PyDataset(workers=4)`` whose ``__getitem__`` spends 20 ms per batch
  (sleeping, as reading a file does): one epoch, Trainer.fit against Model.fit (target <= 1.1x).
- ``resume``: a ``tf.data`` pipeline with a costly ``map``, resumed from a checkpoint taken at batch
  1,900 of 2,000: the time to finish the last 100 batches against a fresh run of 100 such batches
  (target <= 1.5x), and the size the saved iterator state adds to the checkpoint.
- ``checkpoint``: the iris data, 201 tiny epochs, the default checkpoint: the share of the fit spent
  on checkpoints, from the same fit with ``enable_checkpointing=False`` (target <= 10%); also shown:
  ``ModelCheckpoint()`` saving every epoch, in the background and with ``async_checkpointing=False``.
- ``read``: one logging point's read of a stage's values (loss, 2 metrics, 3 logged values) through
  the compiled reader, one call and one transfer, against one read per value (target <= 0.5x).
- ``xla_auto``: an LSTM on padded batches (a new sequence length every batch, unknown count):
  ``jit_compile="auto"`` against ``jit_compile=False`` (target <= 1.1x).

    python benchmarks/pipelines.py            # every row (about 2 minutes on 2 cores)
    python benchmarks/pipelines.py --rows checkpoint,resume
    python benchmarks/run.py --suite pipelines   # the same
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kerastrainer as kt  # noqa: E402
from kerastrainer.host_reads import StageReaders  # noqa: E402
from kerastrainer.stages import TRAIN  # noqa: E402
from kerastrainer.steps import CompiledSteps  # noqa: E402

TARGETS = {"pydataset": 1.10, "resume": 1.50, "checkpoint": 0.10, "xla_auto": 1.10, "read": 0.50}


class Small(kt.TrainModule):
    def __init__(self, classes=3):
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.out = keras.layers.Dense(classes)

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(1e-2)


def quiet(root, **flags):
    flags.setdefault("enable_checkpointing", False)
    flags.setdefault("logger", False)
    return kt.Trainer(default_root_dir=root, enable_progress_bar=False, enable_model_summary=False,
                      **flags)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------ PyDataset
class SlowBatches(keras.utils.PyDataset):
    def __init__(self, batches=64, **kwargs):
        super().__init__(**kwargs)
        self.batches = batches

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        time.sleep(0.02)  # reading and decoding a file
        rng = np.random.default_rng(index)
        return rng.normal(size=(32, 8)).astype("float32"), rng.integers(0, 3, size=32)


class KerasEpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.starts = []

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.starts.append(time.perf_counter())


class EpochClock(kt.Callback):
    def __init__(self):
        self.starts = []

    def on_train_epoch_start(self, trainer, module):
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, module):
        self.starts.append(time.perf_counter())


def pydataset_row(root, repeats) -> dict:
    """Seconds per epoch after the first (tracing), as Keras and the Trainer each run them."""
    epochs = repeats + 1
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras_clock, clock = KerasEpochClock(), EpochClock()
    model.fit(SlowBatches(workers=4, max_queue_size=10), epochs=epochs, verbose=0, callbacks=[keras_clock])
    quiet(root, max_epochs=epochs, callbacks=[clock]).fit(
        Small(), train_data=SlowBatches(workers=4, max_queue_size=10))
    fit_s = statistics.median(np.diff(keras_clock.starts)[1:])
    kt_s = statistics.median(np.diff(clock.starts)[1:])
    return {"value": kt_s / fit_s, "detail": f"Trainer {kt_s:.2f} s/epoch, Model.fit {fit_s:.2f} s "
                                             f"(workers=4); __getitem__ alone {64 * 0.02:.2f} s serially"}


# ------------------------------------------------------------------------------------ resume
def costly_pipeline(batches=2000):
    def work(x, y):
        for _ in range(30):  # a costly decode / augmentation
            x = tf.math.sin(x) + tf.math.cos(x) * 0.5
        return x, y

    x = np.random.default_rng(0).normal(size=(batches * 16, 8)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=batches * 16)
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(4096, seed=0).map(work).batch(16)


def resume_row(root, repeats) -> dict:
    folder = os.path.join(root, "resume")
    checkpoint = kt.callbacks.ModelCheckpoint(dirpath=folder, every_n_train_steps=1900, save_top_k=-1,
                                              filename="at-{step}")
    quiet(root, max_steps=1900, callbacks=[checkpoint]).fit(Small(), train_data=costly_pipeline())
    path = os.path.join(folder, "at-step=1900.ckpt")
    from kerastrainer.checkpoint import read_checkpoint

    state_kb = read_checkpoint(path)["data"]["iterator"].nbytes / 1024  # the shuffle buffer, mostly
    file_kb = os.path.getsize(path) / 1024
    resumed, fresh = [], []
    for repeat in range(repeats + 1):
        resumed_s = timed(lambda: quiet(root, max_epochs=1).fit(Small(), train_data=costly_pipeline(),
                                                                 ckpt_path=path))
        fresh_s = timed(lambda: quiet(root, max_epochs=1, limit_train_batches=100).fit(
            Small(), train_data=costly_pipeline()))
        if repeat:
            resumed.append(resumed_s)
            fresh.append(fresh_s)
    resumed_s, fresh_s = statistics.median(resumed), statistics.median(fresh)
    return {"value": resumed_s / fresh_s,
            "detail": f"finishing batches 1,900-2,000 after a resume {resumed_s:.2f} s, "
                      f"100 fresh batches {fresh_s:.2f} s; the iterator state (shuffle buffer 4,096 rows) "
                      f"is {state_kb:.0f} KiB of the {file_kb:.0f} KiB file"}


# ------------------------------------------------------------------------------------ checkpoints
def iris():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype("float32"), y


class CountSaves(kt.Callback):
    saves = 0

    def on_save_checkpoint(self, trainer, module, checkpoint):
        self.saves += 1


def checkpoint_row(root, repeats) -> dict:
    x, y = iris()

    def fit(every_epoch=False, **flags):
        folder, counter = tempfile.mkdtemp(dir=root), CountSaves()
        callbacks = [counter] + ([kt.callbacks.ModelCheckpoint()] if every_epoch else [])
        trainer = quiet(folder, max_epochs=201, callbacks=callbacks, **flags)
        return timed(lambda: trainer.fit(Small(), train_data=(x, y), batch_size=32)), counter.saves

    fit()  # warm-up
    variants = {"none": {}, "default": {"enable_checkpointing": True},
                "every": {"every_epoch": True, "enable_checkpointing": True},
                "every_in_loop": {"every_epoch": True, "enable_checkpointing": True,
                                  "async_checkpointing": False}}
    times: dict = {key: [] for key in variants}
    saves = {}
    for _ in range(repeats):
        for key, flags in variants.items():
            seconds, saves[key] = fit(**flags)
            times[key].append(seconds)
    median = {key: statistics.median(values) for key, values in times.items()}

    def share(key):
        return (median[key] - median["none"]) / median[key]

    return {"value": share("default"),
            "detail": f"fit {median['none']:.2f} s without checkpoints; the default checkpoint "
                      f"{median['default']:.2f} s ({saves['default']} saves, {share('default'):.0%}); every epoch "
                      f"in the background {median['every']:.2f} s ({saves['every']} saves, {share('every'):.0%}); "
                      f"every epoch in the loop {median['every_in_loop']:.2f} s ({share('every_in_loop'):.0%})"}


# ------------------------------------------------------------------------------------ XLA "auto"
class Recurrent(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.rnn = keras.layers.LSTM(32)
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(self.rnn(x))

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.Adam(1e-3)


def padded_sequences(batches=150):
    """Sequences of 5-80 steps, padded per batch (a new length every batch), unknown length."""
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(int(n), 8)).astype("float32") for n in rng.integers(5, 80, size=batches * 16)]
    ds = tf.data.Dataset.from_generator(lambda: ((r, np.float32(r.mean())) for r in rows),
                                        output_signature=(tf.TensorSpec((None, 8)), tf.TensorSpec(())))
    return ds.padded_batch(16)


def xla_auto_row(root, repeats) -> dict:
    quiet(root, max_epochs=1, jit_compile=False).fit(Recurrent(), train_data=padded_sequences(10))  # warm-up
    times: dict = {"auto": [], False: []}
    reason = ""
    for _ in range(repeats):
        for jit in times:
            trainer = quiet(root, max_epochs=1, jit_compile=jit)
            times[jit].append(timed(lambda: trainer.fit(Recurrent(), train_data=padded_sequences())))
            reason = trainer.step_tuner.reason if jit == "auto" else reason
    auto_s, plain_s = statistics.median(times["auto"]), statistics.median(times[False])
    return {"value": auto_s / plain_s,
            "detail": f"jit_compile='auto' {auto_s:.2f} s ({reason}), False {plain_s:.2f} s; LSTM, "
                      "150 padded batches of unknown count"}


# PyDataset last: Keras's fit with PyDataset workers leaves the process slower for what follows
# (the resume row takes twice as long after it; after the Trainer's PyDataset fit it does not).
# ------------------------------------------------------------------------------------ logging reads
class Logged(Small):
    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")]

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("peak", loss, reduce_fx="max")
        self.log("twice", loss * 2.0, on_step=True, on_epoch=True)
        return loss


def read_row(root, repeats) -> dict:
    """One logging point's read of the training values (loss, 2 metrics, 3 logged values): through
    the compiled reader (one call, one transfer) against one read per value."""
    x, y = iris()
    trainer = quiet(root, max_epochs=1)
    trainer.fit(Logged(), (x, y), batch_size=16)
    results = trainer.results

    def per_read(n=2000):
        def reads():
            for _ in range(n):
                results.recorder.changed(TRAIN)
                results.read(TRAIN)
        return timed(reads) / n

    results.readers = StageReaders(None)
    plain = statistics.median(per_read() for _ in range(repeats))
    results.readers = StageReaders(CompiledSteps.compile_reader)
    per_read(20)  # the plain reads before a reader is made, and its trace
    compiled = statistics.median(per_read() for _ in range(repeats))
    return {"value": compiled / plain,
            "detail": f"{compiled * 1e6:.0f} us against {plain * 1e6:.0f} us per logging point "
                      f"({len(results.read(TRAIN))} values)"}


ROWS = {"resume": resume_row, "checkpoint": checkpoint_row, "xla_auto": xla_auto_row, "read": read_row,
        "pydataset": pydataset_row}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {', '.join(ROWS)}")
    parser.add_argument("--repeats", type=int, default=3, help="measured repetitions per row (medians)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown or not names:
        parser.error(f"--rows takes {', '.join(ROWS)}. Received: --rows {args.rows!r}")
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"{args.repeats} repetitions, medians")
    missed = 0
    with tempfile.TemporaryDirectory() as root:
        for name in [row for row in ROWS if row in names]:
            result = ROWS[name](root, args.repeats)
            ok = result["value"] <= TARGETS[name]
            missed += not ok
            shown = f"{result['value']:.0%}" if name == "checkpoint" else f"{result['value']:.2f}x"
            target = f"{TARGETS[name]:.0%}" if name == "checkpoint" else f"{TARGETS[name]:.2f}x"
            print(f"{name:<11} {shown:>6} (target <= {target}) {'ok' if ok else 'MISSED'}  {result['detail']}",
                  flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
