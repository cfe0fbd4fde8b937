"""Fault injection: crafted and damaged checkpoints, SIGKILL during checkpoint writes, and runs that
start together.

    python benchmarks/faults.py            # 24 kills, 8 runs started together (a few minutes)
    python benchmarks/faults.py --quick    # 6 kills, 4 runs

Crafted files: real checkpoints rewritten (valid checksum) to name a callable as the module class
(``os.system``, ``subprocess.run``, ``builtins.exec``, with a command writing a marker file), a module
beside the file that writes a marker when imported, a ModelCheckpoint book naming a file outside its
folder, and a logger version of ``../../outside``; each is loaded, resumed or evaluated, and the
markers and the outside files are checked. Damaged files: bytes flipped at 5-90 % of a file and
4 KiB of random bytes; every read must fail with an error that names the file as damaged.

Kills: a child process trains a model of about 4 MB, saving a checkpoint every step, and is killed
with SIGKILL a few milliseconds after it starts a save (mostly in the middle of the write); the next child resumes from ``last`` and is
killed again, and a last one finishes a few steps later. After every kill each checkpoint file is read back with its
checksum verified, and the temp files the killed writer left are counted; when the next run starts
it must remove them, and once the last one finished, the folder must hold only the files its book
keeps (the journal of written files lets a resume remove the rest). Starts: N processes build a Trainer with the default logger in one folder at
the same moment and fit a step; each must get a run folder of its own.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kerastrainer.checkpoint_io import read_checkpoint  # noqa: E402

CHILD = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
import kerastrainer as kt

class Wide(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(1000)
        self.out = keras.layers.Dense(1)
    def call(self, x, training=False):
        return self.out(self.hidden(x))
    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)
    def configure_optimizer(self):
        return keras.optimizers.SGD(0.001)

class Announce(kt.Callback):
    def on_save_checkpoint(self, trainer, module, checkpoint):
        print("saved", flush=True)

root, steps = sys.argv[1], int(sys.argv[2])
x = np.random.default_rng(0).normal(size=(64, 1000)).astype("float32")
saver = kt.callbacks.ModelCheckpoint(dirpath=os.path.join(root, "ck"), every_n_train_steps=1,
                                     save_top_k=2, monitor="loss", filename="{step}",
                                     save_last=True)
trainer = kt.Trainer(max_steps=steps, callbacks=[saver, Announce()], default_root_dir=root,
                     enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Wide(), train_data=(x, x[:, :1]), batch_size=8, ckpt_path="last")
"""

START = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import kerastrainer as kt
from tests.helpers import BoringModule, regression_data
root, at = sys.argv[1], float(sys.argv[2])
trainer = kt.Trainer(max_steps=1, default_root_dir=root, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False)
time.sleep(max(0.0, at - time.time()))  # every process starts its run at the same moment
trainer.fit(BoringModule(), train_data=regression_data(8), batch_size=8)
print(trainer.log_dir)
"""

CRAFTED = r"""
import json, os, sys, warnings
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import kerastrainer as kt
from kerastrainer.checkpoint_io import read_checkpoint, write_checkpoint
from tests.helpers import BoringModule, regression_data

root = sys.argv[1]
os.chdir(root)
sys.path.insert(0, root)
warnings.simplefilter("ignore")
marker = os.path.join(root, "code-ran")
precious = os.path.join(root, "precious.txt")
with open(precious, "w") as f:
    f.write("a user's file")
with open(os.path.join(root, "evil_mod.py"), "w") as f:
    f.write(f"open({marker!r}, 'w').write('imported')\n")

def trainer(**flags):
    return kt.Trainer(enable_progress_bar=False, enable_model_summary=False, **flags)

def saved(name):
    ck = kt.callbacks.ModelCheckpoint(dirpath=os.path.join(root, name), save_top_k=1, save_last=True)
    trainer(max_epochs=1, callbacks=[ck], logger=kt.loggers.CSVLogger(os.path.join(root, name))).fit(
        BoringModule(), train_data=regression_data(16), batch_size=8)
    return ck.last_model_path

def rewrite(path, change):
    tree = read_checkpoint(path)
    change(tree)
    write_checkpoint(path, tree)
    return path

def named(cls, hparams):
    def change(tree):
        tree["module"]["class"] = cls
        tree["module"]["hparams"] = hparams
    return change

def outside_book(tree):
    for state in tree["callbacks"].values():
        if "recent" in state:
            state["dirpath"] = None
            state["recent"] = [precious] + state["recent"]
            state["best_k_models"] = [[precious, -1.0]] + state["best_k_models"]

def outside_version(tree):
    for state in tree["loggers"]:
        state["version"] = "../../outside"

command = f"echo ran > {marker}"
tries = [
    ("load", named("os.system", {"command": command})),
    ("load", named("subprocess.run", {"args": command, "shell": True})),
    ("load", named("builtins.exec", {"source": f"open({marker!r}, 'w').write('ran')"})),
    ("load", named("evil_mod.Evil", {})),
    ("resume", named("evil_mod.Evil", {})),
    ("resume", outside_book),
    ("resume", outside_version),
]
refused = 0
for i, (how, change) in enumerate(tries):
    path = rewrite(saved(f"run{i}"), change)
    try:
        if how == "load":
            kt.TrainModule.load_from_checkpoint(path)
        else:
            ck = kt.callbacks.ModelCheckpoint(dirpath=os.path.dirname(path), save_top_k=1, save_last=True)
            trainer(max_epochs=3, callbacks=[ck], logger=kt.loggers.CSVLogger(os.path.join(root, f"run{i}"))).fit(
                BoringModule(), train_data=regression_data(16), batch_size=8, ckpt_path=path)
    except (ValueError, TypeError):
        refused += 1
outside = [p for p in (os.path.join(root, "outside"), os.path.dirname(root) + "/outside")
           if os.path.exists(p)]
touched = len(outside) + (0 if os.path.exists(precious) else 1)
damaged = named_right = 0
clean = open(saved("damage"), "rb").read()
for how in (0.05, 0.1, 0.3, 0.5, 0.7, 0.9, "random"):
    data = bytearray(clean)
    if how == "random":
        start = len(data) // 3
        data[start:start + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    else:
        start = int(len(data) * how)
        data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path = os.path.join(root, "damaged.ckpt")
    open(path, "wb").write(bytes(data))
    damaged += 1
    try:
        BoringModule.load_from_checkpoint(path)
    except ValueError as error:
        named_right += path in str(error) and "damaged" in str(error)
print(json.dumps({"crafted": len(tries), "refused": refused, "code run": int(os.path.exists(marker)),
                  "outside touched": touched, "damaged": damaged, "damaged named": named_right}))
"""

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def temporaries(root: str) -> list[str]:
    return [p for p in glob.glob(os.path.join(root, "**", ".*.tmp-*"), recursive=True)]


def kill_trials(root: str, kills: int, rng: random.Random) -> dict:
    intact = corrupt = left = 0
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", CHILD, root, "100000"], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=HERE)
        for _ in range(1 + rng.randrange(4)):  # a few saves into this run,
            child.stdout.readline()  # printed as the checkpoint is built, before it is written
        time.sleep(rng.uniform(0.0, 0.03))  # then most often in the middle of the write
        child.kill()
        child.wait()
        left += len(temporaries(root))
        for path in glob.glob(os.path.join(root, "ck", "*.ckpt")):
            try:
                read_checkpoint(path)
                intact += 1
            except ValueError:
                corrupt += 1
    last = os.path.join(root, "ck", "last.ckpt")
    reached = read_checkpoint(last)["trainer"]["global_step"] if os.path.exists(last) else 0
    final = subprocess.run([sys.executable, "-c", CHILD, root, str(reached + 4)], cwd=HERE,
                           capture_output=True, text=True)  # a few steps past the killed runs' files
    return {"kills": kills, "checked": intact + corrupt, "corrupt": corrupt,
            "temporaries after kills": left, "temporaries after a new start": len(temporaries(root)),
            "resume exit code": final.returncode, "beyond the kept set": beyond_kept(root)}


def beyond_kept(root: str) -> list[str]:
    """The checkpoint files in the folder that the finished run's book does not keep."""
    folder = os.path.join(root, "ck")
    book = next(state for state in read_checkpoint(os.path.join(folder, "last.ckpt"))["callbacks"].values()
                if isinstance(state, dict) and "best_k_models" in state)
    kept = {os.path.basename(path) for path, _ in book["best_k_models"]} | {"last.ckpt"}
    return sorted(name for name in os.listdir(folder) if name.endswith(".ckpt") and name not in kept)


def start_trials(root: str, runs: int) -> dict:
    at = time.time() + 8.0  # after every process has imported TensorFlow
    procs = [subprocess.Popen([sys.executable, "-c", START, root, str(at)], cwd=HERE, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(runs)]
    folders = [proc.communicate()[0].strip().splitlines()[-1:] for proc in procs]
    folders = [f[0] for f in folders if f]
    return {"runs": runs, "finished": len(folders), "collisions": len(folders) - len(set(folders))}


def crafted_trials(root: str) -> dict:
    os.makedirs(root)
    done = subprocess.run([sys.executable, "-c", CRAFTED, root], cwd=HERE, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the crafted-file trials failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 kills and 4 runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        crafted = crafted_trials(os.path.join(root, "crafted"))
        kills = kill_trials(os.path.join(root, "kills"), 6 if args.quick else 24,
                            random.Random(args.seed))
        starts = start_trials(os.path.join(root, "starts"), 4 if args.quick else 8)
    checks = [
        (f"code run by {crafted['crafted']} crafted files ({crafted['refused']} refused)",
         crafted["code run"], crafted["code run"] == 0),
        ("files outside the run touched by them", crafted["outside touched"],
         crafted["outside touched"] == 0),
        ("damaged files named as damaged", f"{crafted['damaged named']} of {crafted['damaged']}",
         crafted["damaged named"] == crafted["damaged"]),
        (f"checkpoints readable after {kills['kills']} SIGKILLs during writes",
         f"{kills['checked'] - kills['corrupt']} of {kills['checked']}", kills["corrupt"] == 0),
        ("temp files left once the next run started", kills["temporaries after a new start"],
         kills["temporaries after a new start"] == 0 and kills["resume exit code"] == 0),
        (f"files beyond the kept set after {kills['kills']} kills and a finished resume",
         len(kills["beyond the kept set"]), not kills["beyond the kept set"]),
        (f"run-folder collisions in {starts['runs']} runs started together",
         f"{starts['collisions']} ({starts['finished']} finished)",
         starts["collisions"] == 0 and starts["finished"] == starts["runs"]),
    ]
    print(f"(temp files seen right after the kills, removed later: "
          f"{kills['temporaries after kills']})")
    if kills["beyond the kept set"]:
        print(f"(files beyond the kept set: {kills['beyond the kept set']})")
    for name, value, ok in checks:
        print(f"[{'ok' if ok else 'MISSED'}] {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
