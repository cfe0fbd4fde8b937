"""Tuner.scale_batch_size and BatchSizeFinder: out-of-memory simulated by a step that raises
``ResourceExhaustedError`` above a size, as a device does."""

import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringModule, PythonInItsStep


def _data(n=200):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def _trainer(**flags):
    # Eager steps see each batch's real size, as the allocator would.
    return kt.Trainer(run_eagerly=True, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **flags)


class Limited(BoringModule):
    """Runs out of memory above ``limit`` rows per batch; records the sizes it saw."""

    def __init__(self, limit=24, batch_size=4, lr=0.05):
        super().__init__(lr=lr)
        self.save_hyperparameters()  # limit, batch_size, lr
        self.seen = []

    def training_step(self, batch, batch_idx):
        rows = batch[0].shape[0]
        if rows is not None:
            self.seen.append(rows)
            if rows > self.hparams.limit:
                raise tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating [{rows}, 3]")
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("mode, expected, tried", [
    ("power", 16, [2, 4, 8, 16, 32]),
    ("binsearch", 24, [2, 4, 8, 16, 32, 24, 28, 26, 25]),
])
def test_the_largest_size_that_fits_is_found_and_written(mode, expected, tried):
    x, y = _data()
    module = Limited(limit=24)
    module(x[:1])
    before = [v.numpy() for v in module.variables]
    found = kt.tuner.Tuner(_trainer()).scale_batch_size(module, (x, y), mode=mode, steps_per_trial=2)
    assert found == expected
    assert module.hparams.batch_size == expected
    assert sorted(set(module.seen), key=module.seen.index) == tried
    for old, new in zip(before, module.variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_sizes_stop_growing_once_the_data_is_one_batch():
    x, y = _data(20)
    module = Limited(limit=1000)
    assert kt.tuner.Tuner(_trainer()).scale_batch_size(module, (x, y), max_trials=10) == 20
    assert max(module.seen) == 20


def test_a_datamodule_gets_the_size():
    x, y = _data()
    datamodule = kt.data.ArrayDataModule(x, y, batch_size=4, val_split=0.2)
    found = kt.tuner.Tuner(_trainer()).scale_batch_size(Limited(limit=40), datamodule=datamodule)
    assert found == 32 and datamodule.batch_size == 32


def test_the_callback_fits_with_the_size_it_found():
    x, y = _data()
    finder = kt.callbacks.BatchSizeFinder(mode="binsearch", steps_per_trial=1)
    trainer = _trainer(max_epochs=1, callbacks=[finder])
    trainer.fit(Limited(limit=24), (x, y), batch_size=4)
    assert finder.optimal_batch_size == 24
    assert trainer.num_training_batches == 9  # ceil(200 / 24)


def test_nothing_fits():
    x, y = _data()
    with pytest.raises(MemoryError, match=r"no batch size fits in device memory; tried \[4, 2, 1\]"):
        kt.tuner.Tuner(_trainer()).scale_batch_size(Limited(limit=0), (x, y), init_val=4)


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "double"}, r"`mode` must be one of \('power', 'binsearch'\). Received: mode='double'"),
    ({"init_val": 0}, r"`init_val` must be an integer >= 1. Received: init_val=0"),
    ({"train_data": "dataset"}, r"needs arrays .* Received: train_data of type _BatchDataset"),
])
def test_bad_arguments_are_refused(kwargs, match):
    x, y = _data()
    if kwargs.get("train_data") == "dataset":
        kwargs["train_data"] = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    kwargs.setdefault("train_data", (x, y))
    with pytest.raises(ValueError, match=match):
        kt.tuner.Tuner(_trainer()).scale_batch_size(Limited(), **kwargs)


def test_a_callback_with_a_bad_mode_is_refused():
    with pytest.raises(ValueError, match=r"Received: mode='huge'"):
        kt.callbacks.BatchSizeFinder(mode="huge")


def test_an_eager_step_that_cannot_be_traced_is_sized_not_called_out_of_memory():
    x = np.random.default_rng(0).normal(size=(128, 3)).astype("float32")
    trainer = kt.Trainer(max_epochs=1, run_eagerly=True, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, logger=False)
    size = kt.tuner.Tuner(trainer).scale_batch_size(PythonInItsStep(), train_data=(x, x[:, :1]),
                                                    init_val=8, max_trials=3)
    assert size == 32
