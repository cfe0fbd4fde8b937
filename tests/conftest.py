import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Every test starts from a clean Keras/TF graph state (names, uids, memory)."""
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()
