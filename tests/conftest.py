import gc
import os
import runpy
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402, F401

import kerastrainer  # noqa: E402, F401

# TensorFlow, Keras and kerastrainer are some 400,000 objects that live as long as the process.
# clear_session() runs gc.collect() (twice per test), which scanned them all each time: 0.2 s a call.
# Frozen, they are out of the collector's sight and a collection scans only what tests made (5 ms).
gc.freeze()

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _fresh_keras_session(tmp_path, monkeypatch):
    """Every test starts from a clean, seeded Keras/TF state (names, uids, memory, RNGs), in its own
    working directory, so default logs and checkpoints never land in the repository."""
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # reproducible weights and shuffles in every test
    yield
    keras.backend.clear_session()
    # Every traced train step stays alive after the test: Keras's optimizer sums gradients with
    # ReplicaContext.all_reduce, a tf.custom_gradient whose closure TensorFlow keeps in its global
    # gradient registry (tensorflow/tensorflow#97697), and the closure holds the step's graph. Some
    # 2,000 objects a fit, so the collections above scanned more in every test (0.26 s each late in
    # a run). Freezing what survived the collection keeps each test's collections to its own objects.
    gc.freeze()
    # Trainer(deterministic=True) turns on TensorFlow's op determinism for the whole process; it
    # must not leak into the next test (it makes tf.data run stateful map functions serially).
    from tensorflow.python.framework import config as tf_config

    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


@pytest.fixture
def run_example(capsys, monkeypatch):
    """Runs ``python <script> *args`` (a name in examples/, or a path) in this test process as the
    interpreter would (``__main__``, its folder first on ``sys.path``, its own ``sys.argv``) and
    returns what it printed. It pays no TensorFlow import and no first trace here (about 7 s of CPU
    on 2 cores)."""
    def run(script, *args):
        path = EXAMPLES / script  # an absolute `script` stays itself
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        monkeypatch.syspath_prepend(str(path.parent))
        capsys.readouterr()
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as exit:  # sys.exit(main()) at the end of a script
            if exit.code not in (0, None):
                raise AssertionError(f"{script} exited with {exit.code!r}: "
                                     f"{capsys.readouterr().out[-3000:]}") from None
        return capsys.readouterr().out

    return run


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, mounted for the test, to fill up (it needs root: skipped elsewhere)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
