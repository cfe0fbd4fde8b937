"""Errors about a user's step reach the user as raised: their first line names the mistake and the
fix, not AutoGraph's "in user code:" listing (which stays, as a note)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastrainer.refusals import refusal, surfaced
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _fit(module, **flags):
    quiet_trainer(max_epochs=1, **flags).fit(module, train_data=regression_data(16), batch_size=4)


class FloatLoss(BoringModule):
    def loss(self, y_true, y_pred):
        return 1.0


class ConstantLoss(BoringModule):
    def loss(self, y_true, y_pred):
        return tf.constant(2.0)


class FloatStep(BoringModule):
    def training_step(self, batch, batch_idx):
        return 1.0


class TupleStep(BoringModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return keras.ops.mean((self(x) - y) ** 2), 3


class LogsText(BoringModule):
    def training_step(self, batch, batch_idx):
        self.log("name", "hello")
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize(("module_cls", "error", "match"), [
    (FloatLoss, ValueError, r"^FloatLoss.training_step: the loss does not depend on any trainable "
                            r"variable.*a Python number or a constant"),
    (ConstantLoss, ValueError, r"^ConstantLoss.training_step: the loss does not depend"),
    (FloatStep, ValueError, r"^FloatStep.training_step: the module has no variables.*never calls "
                            r"the model"),
    (TupleStep, TypeError, r"^TupleStep.training_step returned a tuple of 2 items. Return the loss"),
    (LogsText, TypeError, r"^self.log\('name', value\) needs a number.*Received: value='hello'"),
])
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_a_mistake_in_a_step_is_named_on_the_first_line(module_cls, error, match, run_eagerly):
    with pytest.raises(error, match=match) as caught:
        _fit(module_cls(), run_eagerly=run_eagerly)
    if not run_eagerly:  # AutoGraph's listing of the user's frames is kept as a note
        assert any("in user code" in note for note in caught.value.__notes__)


def test_a_module_with_every_layer_frozen_warns_and_changes_nothing():
    module = BoringModule()
    module(np.zeros((1, 3), "float32"))
    module.trainable = False
    before = [w.numpy().copy() for w in module.weights]
    with pytest.warns(UserWarning, match=r"no trainable variables \(every layer is frozen\)"):
        _fit(module)
    for old, new in zip(before, module.weights):
        np.testing.assert_array_equal(old, new.numpy())


def _wrapped(inner):
    try:
        try:
            raise inner
        except type(inner):
            raise type(inner)("in user code: ...")  # noqa: B904 - what AutoGraph raises
    except type(inner) as error:
        return error


def test_a_users_error_under_autograph_is_unwrapped_with_the_listing_as_a_note():
    original = ValueError("the user's own error")
    assert surfaced(_wrapped(original)) is original
    assert original.__notes__ == ["(ValueError as TensorFlow and Keras report it:)\nin user code: ..."]
    marked = refusal(ValueError("kerastrainer's refusal"))
    assert surfaced(_wrapped(marked)) is marked
    assert marked.__notes__ == ["Where, in the traced step (ValueError from AutoGraph):\n"
                                "in user code: ..."]


def test_an_error_raised_while_handling_another_is_kept_as_raised():
    try:
        try:
            raise KeyError("handled")
        except KeyError:
            raise ValueError("what the user raised")  # noqa: B904 - its context is the KeyError
    except ValueError as error:
        users = error
    assert surfaced(_wrapped(users)) is users
    assert surfaced(users) is users


class LossNone(BoringModule):
    def loss(self, y_true, y_pred):
        keras.losses.mean_squared_error(y_true, y_pred)  # no return


class LogsNone(BoringModule):
    def training_step(self, batch, batch_idx):
        self.log("n", None)
        return super().training_step(batch, batch_idx)


class DictInputs(BoringModule):
    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs["features"]))


@pytest.mark.parametrize(("module_cls", "error", "match"), [
    (LossNone, TypeError, r"^LossNone.training_step: loss\(y_true, y_pred\) returned None"),
    (LogsNone, TypeError, r"^self.log\('n', value\) got None.*Received: value=None"),
])
def test_none_from_a_loss_or_to_log_is_named_on_the_first_line(module_cls, error, match):
    with pytest.raises(error, match=match):
        _fit(module_cls())


def test_a_wrong_key_of_a_dict_input_is_the_key_error_itself():
    x, y = regression_data(16)
    with pytest.raises(KeyError, match=r"^'features'") as caught:
        quiet_trainer(max_epochs=1).fit(DictInputs(), ({"feature": x}, y), batch_size=4)
    assert any("Exception encountered when calling" in note for note in caught.value.__notes__)


def _built():
    module = BoringModule()
    quiet_trainer(max_epochs=1).fit(module, regression_data(16, features=8), batch_size=4)
    return module


@pytest.mark.parametrize("where", ["train_data", "val_data", "the prediction data"])
def test_other_features_than_the_module_was_built_on_name_both_shapes(where):
    module = _built()
    other = regression_data(16, features=5)
    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(ValueError, match=rf"^{where} has inputs of shape \(None, 5\), but BoringModule "
                                         r"was built on inputs of shape \(None, 8\)"):
        if where == "train_data":
            trainer.fit(module, other, batch_size=4)
        elif where == "val_data":
            trainer.fit(module, regression_data(16, features=8), val_data=other, batch_size=4)
        else:
            trainer.predict(module, other[0], batch_size=4)


def test_an_unbatched_dataset_after_building_is_named_as_unbatched():
    module = _built()
    data = tf.data.Dataset.from_tensor_slices(regression_data(16, features=8))
    with pytest.raises(ValueError, match=r"^train_data gives single examples of shape \(8,\), but "
                                         r"BoringModule was built on batches of shape \(None, 8\): is "
                                         r"the tf.data dataset batched\?"):
        quiet_trainer(max_epochs=1).fit(module, data)


def test_a_checkpoint_path_under_a_file_names_the_file(tmp_path):
    module = _built()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"^Cannot write the checkpoint .*: '.*afile' is a file, "
                                                 r"and a folder is needed there"):
        module.trainer.save_checkpoint(tmp_path / "afile" / "m.ckpt")
    assert (tmp_path / "afile").read_text() == "x"
