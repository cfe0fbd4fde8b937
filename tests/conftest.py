import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402, F401

import kerastrainer  # noqa: E402, F401

# TensorFlow, Keras and kerastrainer are some 400,000 objects that live as long as the process.
# clear_session() runs gc.collect() (twice per test), which scanned them all each time: 0.2 s a call.
# Frozen, they are out of the collector's sight and a collection scans only what tests made (5 ms).
gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_keras_session(tmp_path, monkeypatch):
    """Every test starts from a clean, seeded Keras/TF state (names, uids, memory, RNGs), in its own
    working directory, so default logs and checkpoints never land in the repository."""
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # reproducible weights and shuffles in every test
    yield
    keras.backend.clear_session()
    # Trainer(deterministic=True) turns on TensorFlow's op determinism for the whole process; it
    # must not leak into the next test (it makes tf.data run stateful map functions serially).
    from tensorflow.python.framework import config as tf_config

    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
