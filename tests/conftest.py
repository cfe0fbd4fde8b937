import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_session(tmp_path, monkeypatch):
    """Every test starts from a clean, seeded Keras/TF state (names, uids, memory, RNGs), in its own
    working directory, so default logs and checkpoints never land in the repository."""
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # reproducible weights and shuffles in every test
    yield
    keras.backend.clear_session()
