"""What a Keras user's loss means under `fit` is what the Trainer trains: sample weights,
regularization losses, and the reduction of a step's loss. Each is compared with `Model.fit`."""

import warnings

import keras
import tensorflow as tf
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


class Linear(kt.TrainModule):
    """Dense(1) on 2 features (with optional regularizers), MSE, SGD: the same as `_keras_twin`."""

    def __init__(self, regularized=False, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        extra = dict(kernel_regularizer=keras.regularizers.L2(0.1),
                     activity_regularizer=keras.regularizers.L1(0.01)) if regularized else {}
        self.dense = keras.layers.Dense(1, **extra)

    def call(self, x, training=False):
        return self.dense(x)

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.SGD(self.hparams.lr)


def _keras_twin(module, regularized):
    extra = dict(kernel_regularizer=keras.regularizers.L2(0.1),
                 activity_regularizer=keras.regularizers.L1(0.01)) if regularized else {}
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, **extra)])
    model.set_weights(module.get_weights())
    model.compile(loss="mse", optimizer=keras.optimizers.SGD(0.1))
    return model


def _data(rows=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2)).astype("float32")
    y = np.where(np.arange(rows) % 2 == 0, -10.0, 10.0).astype("float32")[:, None]
    weight = (np.arange(rows) % 2 == 0).astype("float32")  # only the -10 targets count
    return x, y, weight


@pytest.mark.parametrize("weight_shape", ["(n,)", "(n, 1)"])
@pytest.mark.parametrize("regularized", [False, True])
def test_training_and_validation_match_keras_fit(weight_shape, regularized):
    x, y, weight = _data()
    weight = weight[:, None] if weight_shape == "(n, 1)" else weight
    module = Linear(regularized=regularized)
    module(np.zeros((1, 2), "float32"))  # built, so both start from the same weights
    model = _keras_twin(module, regularized)
    history = model.fit(x, y, sample_weight=weight, batch_size=64, epochs=30, shuffle=False,
                        verbose=0)
    trainer = quiet_trainer(max_epochs=30)
    trainer.fit(module, train_data=(x, y, weight), batch_size=64)
    for ours, theirs in zip(module.get_weights(), model.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert module.dense.bias.numpy()[0] < -5  # the weighted targets win
    assert trainer.history["loss"][-1] == pytest.approx(history.history["loss"][-1], rel=1e-4)
    evaluated = model.evaluate(x, y, sample_weight=weight, batch_size=64, verbose=0)
    assert trainer.validate(data=(x, y, weight), batch_size=64)["val_loss"] == pytest.approx(
        evaluated, rel=1e-4)


def test_sample_weights_that_fit_no_example_are_refused():
    x, y, _ = _data(8)
    with pytest.raises(ValueError, match=r"sample weights of shape \(None, 2\) do not fit "
                                         r"per-example losses of shape \(None,\)"):
        quiet_trainer(max_epochs=1).fit(Linear(), train_data=(x, y, np.ones((8, 2), "float32")))


def test_add_loss_is_part_of_the_loss():
    class Penalized(Linear):
        def call(self, x, training=False):
            out = self.dense(x)
            self.add_loss(3.0 * keras.ops.mean(out ** 2))
            return out

    x, y, _ = _data(16)
    trainer = quiet_trainer(max_epochs=1)
    module = Penalized(lr=0.0)
    trainer.fit(module, train_data=(x, y), batch_size=16)
    prediction = module(x)
    expected = np.mean((prediction.numpy() - y) ** 2) + 3.0 * np.mean(prediction.numpy() ** 2)
    assert trainer.callback_metrics["loss"] == pytest.approx(expected, rel=1e-5)


class PerExample(BoringModule):
    """Returns the per-example losses instead of their mean."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return keras.losses.mean_squared_error(y, self(x, training=True))


def test_a_per_example_loss_is_trained_as_its_mean_with_a_warning():
    x, y = regression_data(32)
    weights, said = [], []
    for cls in (PerExample, BoringModule):
        keras.backend.clear_session()
        kt.seed_everything(0)
        module = cls()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_trainer(max_epochs=2, steps_per_execution=1).fit(module, train_data=(x, y),
                                                                   batch_size=8)
        weights.append(module.get_weights())
        said.append([str(w.message) for w in caught if "not a scalar" in str(w.message)])
    assert said[0] and not said[1]
    assert said[0][0].startswith("PerExample.training_step returned a loss of shape (None,)")
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_regularization_reaches_a_custom_step_through_compute_step_loss():
    class Custom(Linear):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.compute_step_loss(y, self(x, training=True))

    x, y, _ = _data(16)
    module = Custom(regularized=True)
    module(np.zeros((1, 2), "float32"))
    model = _keras_twin(module, regularized=True)
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    quiet_trainer(max_epochs=3).fit(module, train_data=(x, y), batch_size=16)
    for ours, theirs in zip(module.get_weights(), model.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


class Classifier(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(3)

    def call(self, x, training=False):
        return self.out(x)

    def loss(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def configure_optimizer(self):
        return keras.optimizers.SGD(0.5)


@pytest.mark.parametrize("with_dataset", [False, True])
def test_class_weight_matches_keras_fit(with_dataset):
    from tests.helpers import classification_data

    x, y = classification_data(rows=48, features=4)
    module = Classifier()
    module(np.zeros((1, 4), "float32"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.set_weights(module.get_weights())
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.SGD(0.5))
    weights = {0: 1.0, 1: 4.0, 2: 0.25}
    model.fit(x, y, class_weight=weights, batch_size=48, epochs=5, shuffle=False, verbose=0)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(48) if with_dataset else (x, y)
    quiet_trainer(max_epochs=5).fit(module, train_data=data, class_weight=weights,
                                    batch_size=None if with_dataset else 48)
    for ours, theirs in zip(module.get_weights(), model.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_validation_split_takes_the_last_rows_as_keras_does():
    x, y = regression_data(40)
    trainer = quiet_trainer(max_epochs=1)
    module = BoringModule()
    trainer.fit(module, train_data=(x, y), validation_split=0.25, batch_size=10)
    assert (trainer.num_training_batches, trainer.num_val_batches) == (3, 1)
    assert trainer.callback_metrics["val_loss"] == pytest.approx(
        trainer.validate(data=(x[30:], y[30:]), batch_size=10)["val_loss"], rel=1e-6)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"validation_split": 1.5}, ValueError, r"fraction in \(0, 1\). Received: validation_split=1.5"),
    ({"validation_split": 0.2, "val_data": (np.zeros((4, 3)), np.zeros((4, 1)))}, ValueError,
     r"either val_data .* or validation_split"),
    ({"class_weight": [1.0, 2.0]}, TypeError, r"`class_weight` must be a dict.*Received"),
])
def test_keras_fit_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=regression_data(8), **kwargs)


def test_shuffle_false_keeps_the_row_order():
    class Order(BoringModule):
        def training_step(self, batch, batch_idx):
            self.log("first_x", batch[0][0, 0], on_step=False, on_epoch=True, reduce_fx="max")
            return super().training_step(batch, batch_idx)

    x, y = regression_data(8)
    x[:, 0] = np.arange(8)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Order(), train_data=(x, y), batch_size=4, shuffle=False)
    assert trainer.callback_metrics["first_x"] == 4.0  # batches start with rows 0 and 4
