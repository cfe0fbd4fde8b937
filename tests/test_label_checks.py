"""Class labels the loss does not check (out of range under XLA, fractional) and broadcast targets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer.label_checks import sparse_classes
from tests.helpers import BoringClassifier, BoringModule, classification_data, quiet_trainer, regression_data


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


def _bad_labels(label=7):
    x, y = classification_data(48)
    y = y.copy()
    y[5] = label
    return x, y


@pytest.mark.parametrize("label", [7, -1])
def test_out_of_range_labels_under_xla_are_refused_at_the_epoch_end(label):
    trainer = quiet_trainer(max_epochs=2, jit_compile=True)
    with pytest.raises(ValueError, match=r"^train_data has 1 class labels outside \[0, 3\): the "
                                         r"predictions have 3 classes"):
        trainer.fit(BoringClassifier(), _bad_labels(label), batch_size=16)
    assert trainer.current_epoch == 0  # refused at the first epoch's end, not trained on


def test_out_of_range_validation_labels_under_xla_are_refused():
    trainer = quiet_trainer(max_epochs=1, jit_compile=True, num_sanity_val_steps=0)
    with pytest.raises(ValueError, match=r"^val_data has 1 class labels outside \[0, 3\)"):
        trainer.fit(BoringClassifier(), classification_data(48), val_data=_bad_labels(), batch_size=16)


def test_out_of_range_labels_in_the_plain_step_name_the_label_first():
    trainer = quiet_trainer(max_epochs=1, jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"^Received a label value of 7 which is outside the valid range of \[0, 3\)"):
        trainer.fit(BoringClassifier(), _bad_labels(), batch_size=16)


def test_two_output_units_for_three_classes_name_the_range():
    trainer = quiet_trainer(max_epochs=1, jit_compile=True)
    with pytest.raises(ValueError, match=r"^train_data has \d+ class labels outside \[0, 2\)"):
        trainer.fit(BoringClassifier(classes=2), classification_data(48), batch_size=16)


def test_fractional_labels_are_warned_about_once_a_run():
    x, y = classification_data(48)
    y = y.astype("float32") + 0.5
    trainer = quiet_trainer(max_epochs=3)
    with pytest.warns(UserWarning, match=r"^train_data has 48 class labels that are not whole numbers") as caught:
        trainer.fit(BoringClassifier(), (x, y), batch_size=16)
    assert len([w for w in caught if "not whole numbers" in str(w.message)]) == 1


def test_whole_float_labels_and_valid_labels_give_no_word(recwarn):
    x, y = classification_data(48)
    trainer = quiet_trainer(max_epochs=2, jit_compile=True)
    trainer.fit(BoringClassifier(), (x, y.astype("float32")), val_data=(x, y), batch_size=16)
    assert not [w for w in recwarn if "class labels" in str(w.message)]


class TwoTargets(BoringModule):
    """One output unit trained against two targets per row."""


def test_predictions_broadcast_against_wider_targets_are_said_as_under_fit():
    x, _ = regression_data(32)
    y = np.stack([x[:, 0], x[:, 1]], axis=1)  # (n, 2) targets, (n, 1) predictions
    with pytest.warns(UserWarning, match=r"targets of shape \(None, 2\) are compared with predictions "
                                         r"of shape \(None, 1\), so the loss broadcasts"):
        quiet_trainer(max_epochs=1).fit(TwoTargets(), (x, y), batch_size=8)


def test_matching_targets_give_no_broadcast_warning(recwarn):
    quiet_trainer(max_epochs=1).fit(BoringModule(), regression_data(32), batch_size=8)
    assert not [w for w in recwarn if "broadcasts" in str(w.message)]


@pytest.mark.parametrize(("true_shape", "pred_shape", "expected"), [
    ([4], [4, 3], 3),
    ([4, 1], [4, 3], 3),
    ([4, 3], [4, 3], None),  # one-hot
    ([4], [4, 1], None),  # one unit: a regression or a binary output
    ([4, 5], [4, 5, 10], 10),  # per-token labels
])
def test_sparse_classes_recognises_class_index_targets(true_shape, pred_shape, expected):
    assert sparse_classes(tf.zeros(true_shape, tf.int32), tf.zeros(pred_shape)) == expected


def test_the_label_checks_trace_each_step_once():
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(BoringClassifier(), classification_data(48), val_data=classification_data(16), batch_size=16)
    assert trainer.trace_counts == {"train": 1, "val": 1}  # no counter made inside a trace
