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


def test_only_marked_errors_are_unwrapped():
    def wrapped(inner):
        try:
            try:
                raise inner
            except ValueError:
                raise ValueError("in user code: ...")  # noqa: B904 - what AutoGraph raises
        except ValueError as error:
            return error

    plain = wrapped(ValueError("the user's own error"))
    assert surfaced(plain) is plain
    marked = refusal(ValueError("kerastrainer's refusal"))
    assert surfaced(wrapped(marked)) is marked
    assert marked.__notes__ == ["Where, in the traced step (ValueError from AutoGraph):\n"
                                "in user code: ..."]
