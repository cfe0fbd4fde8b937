import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer.data import to_source
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _epochs_of_rows(source, epochs):
    """Returns the first feature of every row, per epoch, from one repeated iterator."""
    iterator = iter(source.dataset(limit=source.num_batches, repeat=True))
    return [np.concatenate([next(iterator)[0][:, 0].numpy() for _ in range(source.num_batches)])
            for _ in range(epochs)]


def test_array_shuffle_differs_by_epoch_and_repeats_under_a_seed():
    x, y = regression_data(rows=20)
    kt.seed_everything(5)
    first = _epochs_of_rows(to_source((x, y), batch_size=6, shuffle=True, name="t"), 2)
    kt.seed_everything(5)
    again = _epochs_of_rows(to_source((x, y), batch_size=6, shuffle=True, name="t"), 2)
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert sorted(first[0]) == sorted(x[:, 0])


def test_evaluation_arrays_are_not_shuffled():
    x, y = regression_data(rows=20)
    rows = _epochs_of_rows(to_source((x, y), batch_size=6, shuffle=False, name="t"), 1)[0]
    np.testing.assert_array_equal(rows, x[:, 0])


@pytest.mark.parametrize("data", [
    (np.zeros((10, 3), "float32"), np.zeros(10, "int64")),
    (np.zeros((10, 3), "float32"), np.zeros((10, 1), "float32"), np.ones(10, "float32")),
    ({"a": np.zeros((10, 2, 2), "float32"), "b": np.zeros((10,), "int32")}, np.zeros(10, "float32")),
    ([np.zeros((10, 3), "float32"), np.zeros((10, 4), "float32")], np.zeros(10, "float32")),
    np.zeros((10, 5), "float64"),
], ids=["x-y", "x-y-weights", "dict-x", "two-inputs", "x-only"])
def test_array_element_spec_is_the_pipelines(data):
    source = to_source(data, batch_size=4, shuffle=True, name="t")
    assert source.element_spec == source.dataset().element_spec


class TwoInputs(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.a, self.b = keras.layers.Dense(1), keras.layers.Dense(1)

    def call(self, x, training=False):
        first, second = x
        return self.a(first) + self.b(second)

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.SGD(0.1)


@pytest.mark.parametrize("pack", [list, tuple])
def test_several_inputs_as_a_list_of_arrays_train(pack):
    """`fit(train_data=([x1, x2], y))` as Keras's fit takes it (it failed: the pipeline's row
    gathering returned a list, which tf.data tried to stack into one tensor)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(24, 3)).astype("float32"), rng.normal(size=(24, 4)).astype("float32")
    y = (x1.sum(axis=1) - x2.sum(axis=1))[:, None]
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(TwoInputs(), train_data=(pack([x1, x2]), y), val_data=(pack([x1, x2]), y),
                batch_size=8)
    assert trainer.global_step == 9 and np.isfinite(trainer.callback_metrics["val_loss"])


class FourInputs(kt.TrainModule):
    def __init__(self):
        super().__init__()
        self.parts = [keras.layers.Dense(1) for _ in range(4)]

    def call(self, x, training=False):
        return sum(part(inputs) for part, inputs in zip(self.parts, x))


def test_a_list_of_more_than_three_arrays_is_several_inputs():
    """Up to three arrays in a list are (x, y, sample_weight); four are x alone, as four inputs."""
    xs = [np.full((6, 2), i, "float32") for i in range(4)]
    module = FourInputs()
    predictions = quiet_trainer().predict(module, data=xs, batch_size=4)
    expected = module(tuple(xs)).numpy().ravel()
    np.testing.assert_allclose(np.concatenate(predictions).ravel(), expected, rtol=1e-6)


def test_float64_arrays_become_floatx():
    x, y = regression_data(rows=8)
    source = to_source((x.astype("float64"), y), batch_size=4, shuffle=False, name="t")
    assert source.element_spec[0].dtype == tf.float32


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ((np.zeros((4, 2)), np.zeros(5)), r"t arrays must all have the same number of rows.*\[4, 5\]"),
        ((np.zeros((0, 2)), np.zeros(0)), r"t has no rows"),
        ({"a": object()}, r"^t\['a'\] is an array of dtype object holding object: only numbers and text"),
        (({"a": np.array([None, 2], dtype=object)}, np.zeros(2)),
         r"^t\['a'\] is an array of dtype object holding NoneType, int"),
    ],
)
def test_bad_arrays(data, match):
    with pytest.raises((ValueError, TypeError), match=match):
        to_source(data, batch_size=2, shuffle=False, name="t")


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=rf"Received: batch_size={batch_size!r}"):
        to_source(regression_data(), batch_size=batch_size, shuffle=False, name="t")


def test_batch_size_with_a_dataset_is_an_error():
    ds = tf.data.Dataset.from_tensor_slices(regression_data()).batch(4)
    with pytest.raises(ValueError, match=r"train_data is a tf.data.Dataset, which is already batched"):
        quiet_trainer().fit(BoringModule(), train_data=ds, batch_size=8)


class RowsDataset(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.epochs_ended = 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]

    def on_epoch_end(self):
        self.epochs_ended += 1


def _generator_function():
    x, y = regression_data(rows=12)
    for start in range(0, 12, 4):
        yield x[start:start + 4], y[start:start + 4]


def _dict_arrays():
    x, y = regression_data(rows=12)
    return {"x": x}, y


class DictInput(BoringModule):
    def call(self, x, training=False):
        return super().call(x["x"], training=training)


@pytest.mark.parametrize(
    ("make_data", "module_cls", "steps"),
    [
        (lambda: regression_data(rows=12), BoringModule, 6),
        (lambda: tf.data.Dataset.from_tensor_slices(regression_data(rows=12)).batch(4), BoringModule, 6),
        (lambda: tf.data.Dataset.from_tensor_slices(regression_data(rows=12)).batch(4)
         .filter(lambda x, y: True), BoringModule, 6),  # unknown length
        (lambda: RowsDataset(*regression_data(rows=12), batch_size=4), BoringModule, 6),
        (lambda: _generator_function, BoringModule, 6),  # called again every epoch
        (_dict_arrays, DictInput, 6),
    ],
    ids=["arrays", "dataset", "unknown-length", "pydataset", "generator-function", "dict-inputs"],
)
def test_every_input_kind_trains_two_epochs(make_data, module_cls, steps):
    data = make_data()
    trainer = quiet_trainer(max_epochs=2)
    batch_size = 4 if isinstance(data, tuple) else None
    trainer.fit(module_cls(), train_data=data, val_data=make_data(), batch_size=batch_size)
    assert trainer.global_step == steps
    assert "val_loss" in trainer.callback_metrics
    if isinstance(data, RowsDataset):
        assert data.epochs_ended >= 2


def test_generator_object_runs_out_after_one_epoch():
    trainer = quiet_trainer(max_epochs=3)
    with pytest.warns(UserWarning, match="train_data ran out of data"):
        trainer.fit(BoringModule(), train_data=_generator_function())
    assert trainer.global_step == 3 and trainer.current_epoch == 1


def test_infinite_dataset_needs_an_int_limit():
    ds = tf.data.Dataset.from_tensor_slices(regression_data(rows=12)).batch(4).repeat()
    with pytest.raises(ValueError, match="infinite length. Pass an int number of batches"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=ds)
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=5)
    trainer.fit(BoringModule(), train_data=ds)
    assert trainer.global_step == 10


class ArraysModule(kt.DataModule):
    batch_size = 4

    def __init__(self):
        self.calls = []

    def prepare_data(self):
        self.calls.append("prepare_data")

    def setup(self, stage):
        self.calls.append(f"setup:{stage}")
        self.x, self.y = regression_data(rows=16)

    def train_dataset(self):
        return self.x, self.y

    def val_dataset(self):
        return self.x[:8], self.y[:8]

    def test_dataset(self):
        return self.x[8:], self.y[8:]

    def teardown(self, stage):
        self.calls.append(f"teardown:{stage}")


def test_datamodule_drives_every_stage():
    dm = ArraysModule()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), datamodule=dm)
    assert trainer.num_training_batches == 4  # the DataModule's batch_size
    assert "test_loss" in trainer.test()  # reuses the fit's DataModule
    assert dm.calls == ["prepare_data", "setup:fit", "teardown:fit", "prepare_data", "setup:test",
                        "teardown:test"]


def test_data_and_datamodule_together_is_an_error():
    with pytest.raises(ValueError, match="Pass either train_data=... or datamodule=..., not both"):
        quiet_trainer().fit(BoringModule(), train_data=regression_data(), datamodule=ArraysModule())


def test_python_lists_of_rows_train_like_arrays():
    x, y = regression_data(8)
    source = to_source((x.tolist(), y.tolist()), batch_size=4, shuffle=False, name="t")
    assert source.rows == 8 and source.num_batches == 2
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), train_data=(x.tolist(), y.tolist()), batch_size=4)
    assert trainer.global_step == 2


def test_ragged_python_lists_are_named():
    with pytest.raises(ValueError, match=r"^t: x is a list of rows of different lengths \(\[2, 3\] "
                                         r"items\).*keras.utils.pad_sequences"):
        to_source(([[1.0, 2.0, 3.0], [1.0, 2.0]], [[1.0], [2.0]]), batch_size=2, shuffle=False,
                  name="t")


def test_a_numpy_integer_batch_size_is_an_integer():
    source = to_source(regression_data(8), batch_size=np.int64(4), shuffle=False, name="t")
    assert source.batch_size == 4 and type(source.batch_size) is int


@pytest.mark.parametrize("data", [
    tf.data.Dataset.from_tensor_slices(regression_data(8)).batch(4).take(0),
    tf.data.Dataset.from_tensor_slices(regression_data(8)).batch(4).filter(lambda x, y: False),
])
def test_an_empty_dataset_is_named(data):
    with pytest.raises(ValueError, match=r"^train_data (has|gave) no batches: the dataset"):
        quiet_trainer(max_epochs=2).fit(BoringModule(), train_data=data)



@pytest.mark.parametrize("as_tensor", [False, True])
def test_text_inputs_as_object_arrays_or_string_tensors_are_predicted_as_keras_predicts_them(as_tensor):
    thal = keras.Input((1,), dtype="string", name="thal")
    age = keras.Input((1,), name="age")
    codes = keras.layers.StringLookup(vocabulary=["fixed", "normal", "reversible"], output_mode="one_hot")(thal)
    joined = keras.layers.Concatenate()([keras.layers.Reshape((4,))(codes), age])
    model = keras.Model({"thal": thal, "age": age}, keras.layers.Dense(1)(joined))
    words = np.array(["fixed", "normal", "reversible", "normal"] * 3, dtype=object)[:, None]  # NumPy's strings
    ages = np.linspace(0, 1, 12, dtype="float32")[:, None]
    data = {"thal": tf.constant(words.astype(str)) if as_tensor else words, "age": ages}
    module = kt.TrainModule.from_keras(model, loss="mse", optimizer="sgd")
    predicted = quiet_trainer().predict(module, data=data, batch_size=4)
    expected = model.predict({"thal": tf.constant(words.astype(str)), "age": ages}, verbose=0)
    np.testing.assert_allclose(predicted, expected, atol=1e-6)
