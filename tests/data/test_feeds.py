"""Saved input state: a resumed fit puts its tf.data iterator back where it was, instead of
reading and dropping the epoch's earlier batches."""

import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer.checkpoint import read_checkpoint
from kerastrainer.data.feeds import sanity_steps
from kerastrainer.data.sources import restore_iterator, serialize_iterator
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _pipeline():
    x, y = regression_data(rows=96)
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=3).map(lambda a, b: (a * 2, b)).batch(8)


def test_a_restored_iterator_goes_on_where_the_saved_one_was():
    saved = iter(_pipeline())
    for _ in range(5):
        next(saved)
    blob = serialize_iterator(saved)
    restored = iter(_pipeline())
    assert restore_iterator(restored, blob)
    np.testing.assert_array_equal(next(restored)[0], next(saved)[0])  # the shuffle buffer came too


def test_a_pipeline_with_python_in_it_is_not_saved():
    def double(x):
        return x * 2

    ds = tf.data.Dataset.range(10).map(lambda x: tf.py_function(double, [x], tf.int64))
    assert serialize_iterator(iter(ds)) is None


def _fit(tmp_path, *, epochs, ckpt_path=None, data=None, **flags):
    kt.seed_everything(0)
    module = BoringModule()
    checkpoint = kt.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=17, save_top_k=-1,
                                              filename="{step}", auto_insert_metric_name=False)
    quiet_trainer(max_epochs=epochs, callbacks=[checkpoint], **flags).fit(
        module, train_data=data if data is not None else _pipeline(), ckpt_path=ckpt_path)
    return module


@pytest.mark.parametrize("save_input_state", [True, False])
def test_resumed_mid_epoch_with_or_without_the_iterator_state_trains_exactly_as_uninterrupted(
        tmp_path, save_input_state):
    uninterrupted = _fit(tmp_path, epochs=3, save_input_state=save_input_state)
    saved = read_checkpoint(tmp_path / "17.ckpt")["data"]  # epoch 1, batch 5 of 12
    assert ("iterator" in saved) is save_input_state
    resumed = _fit(tmp_path / "again", epochs=3, ckpt_path=str(tmp_path / "17.ckpt"),
                   save_input_state=save_input_state)
    for a, b in zip(uninterrupted.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_state_that_fits_another_pipeline_is_replayed_with_a_warning(tmp_path):
    _fit(tmp_path, epochs=2)
    x, y = regression_data(rows=96)
    other = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # no shuffle: another structure
    with pytest.warns(UserWarning, match="does not fit this input pipeline; the resumed fit reads and drops the 17"):
        _fit(tmp_path / "again", epochs=2, ckpt_path=str(tmp_path / "17.ckpt"), data=other)


def test_save_input_state_is_checked():
    with pytest.raises(TypeError, match=r"`save_input_state` must be True or False. Received: save_input_state=1"):
        kt.Trainer(save_input_state=1)


def test_a_cached_pipeline_too_large_to_save_is_replayed(tmp_path, monkeypatch):
    from kerastrainer.data import sources

    monkeypatch.setattr(sources, "MAX_INPUT_STATE_BYTES", 1024)  # as a .cache() of the data would be
    with pytest.warns(UserWarning, match=r"iterator state is 0 MiB .* replays the epoch"):
        _fit(tmp_path, epochs=2, data=_pipeline().cache())
    assert "iterator" not in read_checkpoint(tmp_path / "17.ckpt")["data"]


def test_sanity_steps_never_exceed_the_validation_batches():
    assert sanity_steps(2, 4) == 2 and sanity_steps(-1, 4) == 4 and sanity_steps(9, 4) == 4
    assert sanity_steps(2, None) == 2 and sanity_steps(-1, None) is None
