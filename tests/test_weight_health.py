"""The epoch-end warning for trainable weights that are no longer finite, compared with Model.fit."""

import re

import keras
import numpy as np
import pytest

import kerastrainer as kt
from kerastrainer.weight_health import first_nonfinite
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    x[3, 1] = np.nan  # one NaN in one row
    return x, y


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(2, activation="softmax")])


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


def test_a_nan_row_is_said_as_model_fit_reports_its_loss(recwarn):
    # Keras before 3.15 reported a finite loss for this data while the kernel went NaN (the case the
    # warning is for); Keras 3.15 reports the NaN loss itself, so the trainer must stay quiet.
    x, y = _data()
    twin = _model()
    twin.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", jit_compile=False)
    history = twin.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    keras_loss = history.history["loss"][0]
    model = _model()
    module = kt.TrainModule.from_keras(model, loss="sparse_categorical_crossentropy",
                                       optimizer=keras.optimizers.SGD(0.1))
    trainer = quiet_trainer(max_epochs=2, jit_compile=False)
    trainer.fit(module, (x, y), batch_size=16, shuffle=False)
    assert np.isnan(model.layers[0].kernel.numpy()).any()
    said = [str(w.message) for w in recwarn if "not finite" in str(w.message)]
    if np.isfinite(keras_loss):
        # the same finite loss as Model.fit reports: the loss itself is Keras's, nothing drops a NaN
        assert trainer.history["loss"][0] == pytest.approx(keras_loss, rel=1e-5)
        assert len(said) == 1
        assert re.match(r"^The trainable weights are not finite after epoch 0 \(first: \S+/kernel\) "
                        r"while the reported loss", said[0])
    else:
        assert np.isnan(trainer.history["loss"][0])  # the NaN loss is reported, as fit reports it
        assert said == []


def test_finite_weights_give_no_warning(recwarn):
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(BoringModule(), regression_data(16), batch_size=4)
    assert not [w for w in recwarn if "not finite" in str(w.message)]


def test_first_nonfinite_names_the_first_bad_variable_and_skips_integers():
    variables = [keras.Variable([1.0], name="ok"), keras.Variable(3, dtype="int32", name="count"),
                 keras.Variable([np.inf], name="bad"), keras.Variable([np.nan], name="later")]
    assert first_nonfinite(variables) == "bad"
    assert first_nonfinite(variables[:2]) is None
