"""TrainModule.from_keras: an existing functional or Sequential model trained with compile's
arguments, compared with Model.fit on the same data."""

import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import quiet_trainer


def _ticket_model():
    """keras-io's functional "ticket" shape: one input, a class head and a number head."""
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    department = keras.layers.Dense(3, name="department")(hidden)
    priority = keras.layers.Dense(1, name="priority")(hidden)
    return keras.Model(inputs, {"department": department, "priority": priority})


def _ticket_data(rows=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 6)).astype("float32")
    return x, {"department": rng.integers(0, 3, rows),
               "priority": rng.normal(size=(rows, 1)).astype("float32")}


COMPILE = dict(loss={"department": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     "priority": "mse"},
               loss_weights={"department": 1.0, "priority": 0.5},
               metrics={"department": ["accuracy"], "priority": ["mae"]})


def test_a_multi_output_model_trains_as_compile_and_fit_train_it(tmp_path):
    x, y = _ticket_data()
    model = _ticket_model()
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=keras.optimizers.SGD(0.1), **COMPILE)
    history = twin.fit(x, y, batch_size=64, epochs=5, shuffle=False, verbose=0)
    module = kt.TrainModule.from_keras(model, optimizer=keras.optimizers.SGD(0.1), **COMPILE)
    trainer = quiet_trainer(max_epochs=5)
    trainer.fit(module, train_data=(x, y), batch_size=64)
    for ours, theirs in zip(module.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert trainer.history["loss"][-1] == pytest.approx(history.history["loss"][-1], rel=1e-4)
    for name in ("department_accuracy", "priority_mae"):  # named as Keras names them
        assert trainer.history[name][-1] == pytest.approx(history.history[name][-1], rel=1e-5)
    for name in ("department_loss", "priority_loss"):  # each output's loss, before loss_weights
        assert trainer.history[name] == pytest.approx(history.history[name], rel=1e-4)
    trainer.save_checkpoint(tmp_path / "ticket.ckpt")
    loaded = kt.TrainModule.load_from_checkpoint(tmp_path / "ticket.ckpt")
    assert type(loaded).__name__ == "KerasModule"
    np.testing.assert_allclose(loaded(x)["priority"], module(x)["priority"], atol=1e-6)


def test_a_sequential_model_with_names_and_a_fresh_optimizer_every_fit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    module = kt.TrainModule.from_keras(model, loss="binary_crossentropy", optimizer="adam",
                                       metrics=["accuracy"])
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module, train_data=(x, y), val_data=(x, y), batch_size=8)
    assert {"loss", "accuracy", "val_accuracy"} <= set(trainer.callback_metrics)
    first = module.optimizer
    trainer.fit(module, train_data=(x, y), batch_size=8)
    assert module.optimizer is not first


def test_outputs_the_model_does_not_have_are_refused():
    with pytest.raises(ValueError, match=r"`loss` names outputs \['dept'\], but the model's outputs "
                                         r"are \['department', 'priority'\]"):
        kt.TrainModule.from_keras(_ticket_model(), loss={"dept": "mse"}, optimizer="sgd")


class LogisticEndpoint(keras.layers.Layer):
    """The Keras guide's endpoint layer: it takes (targets, logits) and adds the loss itself."""

    def __init__(self, name=None):
        super().__init__(name=name)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def call(self, targets, logits):
        self.add_loss(self.loss_fn(targets, logits))
        return keras.ops.softmax(logits)


def _endpoint_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(3,), name="inputs")
    targets = keras.Input(shape=(10,), name="targets")
    logits = keras.layers.Dense(10)(inputs)
    predictions = LogisticEndpoint(name="predictions")(targets, logits)
    return keras.Model(inputs=[inputs, targets], outputs=predictions)


def test_a_model_whose_only_loss_is_add_loss_trains_as_fit_trains_it():
    rng = np.random.default_rng(0)
    data = {"inputs": rng.random((24, 3)).astype("float32"),
            "targets": rng.random((24, 10)).astype("float32")}  # the targets are an input: no y
    twin = _endpoint_model()
    twin.compile(optimizer=keras.optimizers.SGD(0.1))
    history = twin.fit(data, batch_size=8, epochs=2, shuffle=False, verbose=0)
    model = _endpoint_model()
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(kt.TrainModule.from_keras(model, optimizer=keras.optimizers.SGD(0.1)), data,
                batch_size=8, shuffle=False)
    assert trainer.history["loss"] == pytest.approx(history.history["loss"], rel=1e-6)
    for ours, theirs in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_no_loss_and_no_add_loss_is_refused_at_the_first_step():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x = np.zeros((8, 3), "float32")
    with pytest.raises(NotImplementedError, match=r"^from_keras got loss=None and the model's call "
                                                  r"added no loss \(add_loss\)"):
        quiet_trainer(max_epochs=1).fit(kt.TrainModule.from_keras(model, optimizer="sgd"), (x, x[:, :1]))


class CategoricalTruePositives(keras.metrics.Metric):
    """The Keras guide's custom metric, defined here and never registered."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = keras.ops.argmax(y_pred, axis=1)
        values = keras.ops.cast(keras.ops.cast(y_true, "int32") == keras.ops.cast(y_pred, "int32"), "float32")
        if sample_weight is not None:
            values = values * keras.ops.cast(sample_weight, "float32")
        self.true_positives.assign_add(keras.ops.sum(values))

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


def _classifier():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("weights", ["class_weight", "sample_weight"])
def test_metrics_are_unweighted_and_weighted_metrics_weighted_as_under_fit(weights):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = rng.integers(0, 3, 96)
    sample_weight = rng.uniform(0.2, 2.0, 96).astype("float32")
    extra = {"class_weight": {0: 1.0, 1: 3.0, 2: 0.5}} if weights == "class_weight" else {}
    keras_weights = {} if weights == "class_weight" else {"sample_weight": sample_weight}
    data = (x, y) if weights == "class_weight" else (x, y, sample_weight)
    metrics = dict(metrics=["accuracy", CategoricalTruePositives()], weighted_metrics=["accuracy"])
    twin = _classifier()
    twin.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", **metrics)
    history = twin.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, **keras_weights, **extra)
    model = _classifier()
    module = kt.TrainModule.from_keras(model, loss="sparse_categorical_crossentropy",
                                       optimizer=keras.optimizers.SGD(0.1), **metrics)
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(module, data, batch_size=32, shuffle=False, **extra)
    assert set(history.history) == {"loss", "accuracy", "weighted_accuracy", "categorical_true_positives"}
    for key, values in history.history.items():  # the custom metric needed no registration
        assert trainer.history[key] == pytest.approx(values, rel=1e-5), key


def test_keras_model_checkpoint_saves_the_users_model_whole(tmp_path):
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = _classifier()
    saver = keras.callbacks.ModelCheckpoint(str(tmp_path / "model_{epoch}.keras"), save_best_only=True,
                                            monitor="loss")
    module = kt.TrainModule.from_keras(model, loss="sparse_categorical_crossentropy", optimizer="sgd")
    quiet_trainer(max_epochs=2, callbacks=[saver]).fit(module, (x, y), batch_size=8)
    loaded = keras.models.load_model(tmp_path / "model_2.keras")
    assert type(loaded) is keras.Sequential
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
