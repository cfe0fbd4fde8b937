"""kerastrainer's speed next to hand-written loops, Keras ``Model.fit`` and the compiled-loop limit.

One process, every variant built first (its first epoch timed as trace + compile), then one epoch of
each variant in turn, ``--repeats`` times (interleaved, so load drift hits all alike); medians.
Variants that own their loop (``Model.fit``, ``Trainer.fit``) run in threads that take turns: an
epoch callback waits for its turn, so exactly one variant computes at a time.

    python benchmarks/run.py            # 60,000 rows, 11 repetitions (about 15-25 minutes on 2 cores)
    python benchmarks/run.py --quick    # under 2 minutes
    python benchmarks/run.py --suite pipelines   # PyDataset, resume and checkpoint costs (pipelines.py)
    python benchmarks/run.py --json results.json
    python benchmarks/run.py --nets mlp     # the MLP only (the full run's conv XLA rows are slow)

Ratios are to LIMIT: one ``tf.function`` running a whole epoch from a ``tf.data`` iterator.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kerastrainer as kt  # noqa: E402

THREADS = 2
# --quick leaves out the conv net's XLA rows: XLA convolutions on a CPU are 2-300x slower (and slow
# to compile); the full run has them.
QUICK_SKIP_CONV = {"hand_xla", "fit_spe_xla", "limit_xla", "floor", "kt_tuned", "kt_tuned_mem"}
ROWS = [  # (key, label)
    ("hand", "hand-written loop, one tf.function call per step (course notes)"),
    ("hand_xla", "same with jit_compile=True"),
    ("hand_sync", "hand-written loop reading the loss every step"),
    ("fit", "Model.fit defaults (steps_per_execution=1)"),
    ("fit_spe", "Model.fit steps_per_execution=32"),
    ("fit_spe_xla", "Model.fit steps_per_execution=32, jit_compile=True"),
    ("limit", "LIMIT: one tf.function per epoch over a tf.data iterator"),
    ("limit_xla", "LIMIT with an XLA-compiled step"),
    ("floor", "in-memory data sliced inside one XLA-compiled loop (floor)"),
    ("kt", "kerastrainer defaults (bar, logger, checkpoints on; arrays)"),
    ("kt_tfdata", "kerastrainer defaults, tf.data input"),
    ("kt_tuned", "kerastrainer spe=32, jit_compile=True, tf.data input"),
    ("kt_tuned_mem", "kerastrainer spe=32, jit_compile=True, arrays (in memory)"),
    ("kt_hook", "kerastrainer spe=1, callback reading the loss in on_train_batch_end"),
]


# ---------------------------------------------------------------------------------------------- nets
def layers(net):
    if net == "mlp":
        return [keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(10)]
    return [keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(10)]


def keras_model(net):
    return keras.Sequential([keras.Input((28, 28, 1)), *layers(net)])


class Net(kt.TrainModule):
    def __init__(self, net="mlp"):
        super().__init__()
        self.body = keras.Sequential(layers(net))

    def call(self, x, training=False):
        return self.body(x)

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.Adam(1e-3)

    def configure_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def dataset(x, y, batch):
    return (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch)
            .prefetch(tf.data.AUTOTUNE))


# ------------------------------------------------------------------------------------ turn-taking
class Gate:
    """Lets a thread run one epoch when the harness grants it; records first-epoch and epoch times."""

    def __init__(self):
        self._go, self._done = threading.Semaphore(0), threading.Semaphore(0)
        self.first = None
        self.times = []
        self._start = None
        self.error = None
        self.thread = None

    def begin(self):  # at every epoch start; also closes the previous epoch
        if self._start is not None:
            self._close()
        self._go.acquire()
        self._start = time.perf_counter()

    def _close(self):
        self.times.append(time.perf_counter() - self._start)
        self._done.release()

    def finish(self):
        if self._start is not None:
            self._close()
            self._start = None


    def start(self, body) -> float:
        """Starts ``body`` in a thread and runs its first epoch; returns the seconds from start."""
        def target():
            try:
                body()
            except BaseException as error:  # surfaced by the harness
                self.error = error
                self._done.release()
            else:
                self.finish()

        start = time.perf_counter()
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        self.run_epoch()
        self.times.clear()  # the first epoch is reported apart
        return time.perf_counter() - start

    def run_epoch(self):  # harness side
        self._go.release()
        self._done.acquire()
        if self.error is not None:
            raise RuntimeError("a benchmark variant failed") from self.error


class KerasGate(keras.callbacks.Callback):
    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def on_epoch_begin(self, epoch, logs=None):
        self.gate.begin()


class TrainerGate(kt.Callback):
    def __init__(self, gate):
        self.gate = gate

    def on_train_epoch_start(self, trainer, module):
        self.gate.begin()


class ReadLoss(kt.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch_idx):
        self.last = float(outputs["loss"])


# ------------------------------------------------------------------------------------ variants
def step_fn(model, optimizer, *, jit):
    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def plain_loop(net, x, y, batch, epochs, gate, *, jit=False, sync=False):
    model, optimizer = keras_model(net), keras.optimizers.Adam(1e-3)
    step, ds = step_fn(model, optimizer, jit=jit), dataset(x, y, batch)
    for _ in range(epochs):
        gate.begin()
        for xb, yb in ds:
            loss = step(xb, yb)
            if sync:
                float(loss)


def limit_loop(net, x, y, batch, epochs, gate, *, jit=False):
    model, optimizer = keras_model(net), keras.optimizers.Adam(1e-3)
    step, ds = step_fn(model, optimizer, jit=jit), dataset(x, y, batch)

    @tf.function
    def epoch(iterator):
        for xb, yb in iterator:
            step(xb, yb)

    for _ in range(epochs):
        gate.begin()
        epoch(iter(ds))


def floor_loop(net, x, y, batch, epochs, gate):
    model, optimizer = keras_model(net), keras.optimizers.Adam(1e-3)
    xs, ys, rows = tf.constant(x), tf.constant(y), len(x) // batch * batch
    step = step_fn(model, optimizer, jit=False).python_function

    @tf.function(jit_compile=True)
    def epoch(order):
        for i in tf.range(rows // batch):
            idx = tf.slice(order, [i * batch], [batch])  # a static batch shape for XLA
            step(tf.gather(xs, idx), tf.gather(ys, idx))

    for e in range(epochs):
        gate.begin()
        epoch(tf.random.experimental.stateless_shuffle(tf.range(len(x)), seed=[0, e]))


def keras_fit(net, x, y, batch, epochs, gate, **compile_flags):
    model = keras_model(net)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")], **compile_flags)
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[KerasGate(gate)])


def trainer_fit(net, x, y, batch, epochs, gate, root, *, tfdata=False, callbacks=(), **flags):
    trainer = kt.Trainer(max_epochs=epochs, default_root_dir=root, num_sanity_val_steps=0,
                         enable_model_summary=False, callbacks=[TrainerGate(gate), *callbacks],
                         **flags)
    data = dict(train_data=dataset(x, y, batch)) if tfdata else dict(train_data=(x, y),
                                                                      batch_size=batch)
    trainer.fit(Net(net), **data)
    return trainer


def make_variant(key, net, x, y, batch, epochs, gate, root):
    match key:
        case "hand" | "hand_xla" | "hand_sync":
            return lambda: plain_loop(net, x, y, batch, epochs, gate, jit=key == "hand_xla",
                                      sync=key == "hand_sync")
        case "limit" | "limit_xla":
            return lambda: limit_loop(net, x, y, batch, epochs, gate, jit=key == "limit_xla")
        case "floor":
            return lambda: floor_loop(net, x, y, batch, epochs, gate)
        case "fit":
            return lambda: keras_fit(net, x, y, batch, epochs, gate)
        case "fit_spe":
            return lambda: keras_fit(net, x, y, batch, epochs, gate, steps_per_execution=32)
        case "fit_spe_xla":
            return lambda: keras_fit(net, x, y, batch, epochs, gate, steps_per_execution=32,
                                     jit_compile=True)
        case "kt" | "kt_tfdata":
            return lambda: trainer_fit(net, x, y, batch, epochs, gate, root, tfdata=key != "kt")
        case "kt_tuned" | "kt_tuned_mem":
            return lambda: trainer_fit(net, x, y, batch, epochs, gate, root,
                                       tfdata=key == "kt_tuned", steps_per_execution=32,
                                       jit_compile=True)
        case "kt_hook":
            return lambda: trainer_fit(net, x, y, batch, epochs, gate, root, tfdata=True,
                                       callbacks=[ReadLoss()], steps_per_execution=1,
                                       jit_compile=False, logger=False, enable_progress_bar=False,
                                       enable_checkpointing=False)
    raise KeyError(key)


# ------------------------------------------------------------------------------------ harness
def synthetic(rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((rows, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, rows)


def warm_up(root):
    """One tiny run of Model.fit and of Trainer.fit, so that neither's first epoch pays one-off
    imports (TensorBoard, rich, h5py; Keras's trainer modules) for the other."""
    x, y = synthetic(64)
    for key in ("fit", "kt"):
        gate = Gate()
        gate.start(make_variant(key, "mlp", x, y, 32, 1, gate, os.path.join(root, "warm")))
        gate.thread.join()
    keras.backend.clear_session()


def measure(net, batch, rows, repeats, keys, root):
    x, y = synthetic(rows)
    gates = {key: Gate() for key in keys}
    first = {}
    for key in keys:
        keras.backend.clear_session()
        first[key] = gates[key].start(make_variant(key, net, x, y, batch, repeats + 1, gates[key],
                                                   os.path.join(root, f"{net}{batch}{key}")))
    for _ in range(repeats):
        for key in keys:
            gates[key].run_epoch()
    for gate in gates.values():
        gate.thread.join()
    return {key: {"epoch_s": statistics.median(gates[key].times), "first_epoch_s": first[key],
                  "epochs_s": gates[key].times} for key in keys}


def stall_check(rows, epochs, root):
    """Epoch times of 20 epochs of one fit each; an epoch > 1.3x the median (+2 ms) has stalled."""
    x, y = synthetic(rows)
    result = {}
    for key in ("kt_tfdata", "kt", "fit"):
        gate = Gate()
        keras.backend.clear_session()
        gate.start(make_variant(key, "mlp", x, y, 32, epochs + 1, gate, os.path.join(root, key)))
        for _ in range(epochs):
            gate.run_epoch()
        gate.thread.join()
        median = statistics.median(gate.times)
        stalled = [round(t, 4) for t in gate.times if t > 1.3 * median + 0.002]
        result[key] = {"median_s": median, "stalled_epochs": len(stalled), "stalled_s": stalled}
    return result


def import_times(repeats):
    def best(code):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ,
                           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
            runs.append(time.perf_counter() - start)
        return min(runs)

    keras_s = best("import keras")
    kt_s = best("import keras, kerastrainer; kerastrainer.Trainer; kerastrainer.callbacks")
    return {"import_keras_s": keras_s, "import_kerastrainer_s": kt_s, "extra_s": kt_s - keras_s}


def peak_memory(rows):
    peaks = {}
    for key in ("fit", "kt"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak-memory", key,
                              "--rows", str(rows)], check=True, capture_output=True, text=True)
        peaks[key] = int(out.stdout.strip().splitlines()[-1])
    return {"fit_mib": peaks["fit"] / 1024, "kt_mib": peaks["kt"] / 1024,
            "ratio": peaks["kt"] / peaks["fit"]}


def peak_memory_child(key, rows):
    x, y = synthetic(rows)
    gate = Gate()
    with tempfile.TemporaryDirectory() as root:
        gate.start(make_variant(key, "mlp", x, y, 32, 2, gate, root))
        gate.run_epoch()
        gate.thread.join()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def report(results, checks):
    for config, rows in results.items():
        limit = rows["limit"]["epoch_s"]
        print(f"\n{config}  (ratios to LIMIT = {limit:.3f} s)")
        print(f"  {'variant':<72} {'epoch s':>8} {'ratio':>6} {'first s':>8}")
        for key, label in ROWS:
            if key in rows:
                row = rows[key]
                print(f"  {label:<72} {row['epoch_s']:8.3f} {row['epoch_s'] / limit:5.2f}x "
                      f"{row['first_epoch_s']:8.2f}")
    print("\nTargets:")
    for name, (value, ok) in checks.items():
        if "nan" not in str(value):
            print(f"  [{'ok' if ok else 'MISSED'}] {name}: {value}")


def evaluate(results, stalls, imports, memory):
    checks = {}
    for config, r in results.items():
        e = {k: v["epoch_s"] for k, v in r.items()}
        for key, _ in ROWS:  # left out (--quick, --only): their checks show nan and are not printed
            e.setdefault(key, float("nan"))
        need = 1.7 if config.endswith("b32") else 1.3
        checks[f"{config}: fit defaults / kt defaults >= {need}"] = (
            f"{e['fit'] / e['kt']:.2f}x", e["fit"] / e["kt"] >= need)
        checks[f"{config}: kt tuned / fit best <= 1.00 (noise 3%)"] = (
            f"{e['kt_tuned'] / e['fit_spe_xla']:.2f}", e["kt_tuned"] / e["fit_spe_xla"] <= 1.03)
        checks[f"{config}: kt tuned / LIMIT-XLA <= 1.10"] = (
            f"{e['kt_tuned'] / e['limit_xla']:.2f}", e["kt_tuned"] / e["limit_xla"] <= 1.10)
        checks[f"{config}: kt arrays / in-memory floor <= 1.5"] = (
            f"{e['kt'] / e['floor']:.2f}", e["kt"] / e["floor"] <= 1.5)
        checks[f"{config}: kt spe=1 + batch hook / hand-written reading loss <= 1.05"] = (
            f"{e['kt_hook'] / e['hand_sync']:.2f}", e["kt_hook"] / e["hand_sync"] <= 1.05)
        first = {k: v["first_epoch_s"] for k, v in r.items()}
        if "kt" in first and "fit" in first:
            checks[f"{config}: kt first epoch <= fit first epoch"] = (
                f"{first['kt']:.2f} s vs {first['fit']:.2f} s", first["kt"] <= first["fit"])
    if stalls is None:  # --only: the speed rows alone
        return checks
    for key, s in stalls.items():
        checks[f"stalled epochs of 20, {key}"] = (s["stalled_epochs"], key == "fit" or
                                                   s["stalled_epochs"] == 0)
    checks["import kerastrainer - import keras <= 0.15 s"] = (f"{imports['extra_s']:.3f} s",
                                                             imports["extra_s"] <= 0.15)
    checks["peak memory kt / fit <= 1.10"] = (
        f"{memory['ratio']:.3f} ({memory['kt_mib']:.0f} / {memory['fit_mib']:.0f} MiB)",
        memory["ratio"] <= 1.10)
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, 3 repetitions (< 2 min)")
    parser.add_argument("--rows", type=int, default=None, help="rows of MLP data (default 60000)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (11)")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--nets", default="mlp,conv",
                        help="comma-separated networks to measure: mlp, conv (default both)")
    parser.add_argument("--only", default=None,
                        help="comma-separated variant keys to measure, e.g. limit_xla,kt_tuned (the "
                             "speed rows alone: no stall check, import time or peak memory)")
    parser.add_argument("--peak-memory", choices=("fit", "kt"), help=argparse.SUPPRESS)
    parser.add_argument("--suite", choices=("speed", "pipelines"), default="speed",
                        help="speed: the rows above (default); pipelines: benchmarks/pipelines.py")
    args = parser.parse_args(argv)
    if args.suite == "pipelines":
        from pipelines import main as pipelines_main  # benchmarks/ is the script's folder

        return pipelines_main(["--repeats", str(args.repeats or 3)])
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    rows = args.rows or (2000 if args.quick else 60000)
    if args.peak_memory:
        return peak_memory_child(args.peak_memory, rows)
    repeats = args.repeats or (3 if args.quick else 11)
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = sorted(set(nets) - {"mlp", "conv"})
    if unknown or not nets:
        parser.error(f"--nets takes mlp and/or conv. Received: --nets {args.nets!r}")
    only = [k.strip() for k in args.only.split(",")] if args.only else None
    if only is not None and (not only or set(only) - {key for key, _ in ROWS} or "limit" not in only):
        parser.error(f"--only takes keys of {[key for key, _ in ROWS]}, 'limit' among them (the ratios "
                     f"are to it). Received: --only {args.only!r}")
    conv_rows = rows // 4 if args.quick else rows // 2  # conv epochs are ~10x longer on a CPU
    print(f"TF {tf.__version__}, Keras {keras.__version__}, intra/inter-op threads "
          f"{THREADS}/{THREADS}, devices {[d.name for d in tf.config.list_logical_devices()]}")
    print(f"MLP rows {rows}, conv rows {conv_rows}, {repeats} interleaved repetitions, medians")
    results = {}
    with tempfile.TemporaryDirectory() as root:
        warm_up(root)
        for net, n in (("mlp", rows), ("conv", conv_rows)):
            if net not in nets:
                continue
            keys = [key for key, _ in ROWS
                    if not (args.quick and net == "conv" and key in QUICK_SKIP_CONV)
                    and (only is None or key in only)]
            for batch in (32, 256):
                print(f"... {net} batch {batch}", flush=True)
                results[f"{net} b{batch}"] = measure(net, batch, n, repeats, keys, root)
        if only is None:
            print("... stall check, import time, peak memory", flush=True)
            stalls = stall_check(rows if args.quick else rows // 6, 20, root)
    if only is not None:
        report(results, evaluate(results, None, None, None))
        return 0
    imports = import_times(1 if args.quick else 3)
    memory = peak_memory(rows // 4 if args.quick else rows // 2)
    checks = evaluate(results, stalls, imports, memory)
    report(results, checks)
    print(f"\nimport: keras {imports['import_keras_s']:.2f} s, keras + kerastrainer "
          f"{imports['import_kerastrainer_s']:.2f} s")
    for key, s in stalls.items():
        print(f"stall check {key}: median epoch {s['median_s']:.3f} s, stalled {s['stalled_s']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "stalls": stalls, "imports": imports, "memory": memory,
                       "checks": {k: {"value": str(v), "ok": bool(ok)} for k, (v, ok) in
                                  checks.items()}, "rows": rows, "conv_rows": conv_rows,
                       "repeats": repeats, "threads": THREADS}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
