"""Several validation (and test) datasets: ``val_data=[a, b]`` reports each one under Lightning's
``val_loss/dataloader_idx_<i>`` keys, and ``validation_step`` gets ``dataloader_idx``."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _datasets():
    """Arrays and a batched tf.data.Dataset with different targets, so their losses differ."""
    x, y = regression_data(rows=48, seed=1)
    arrays = (x[:24], y[:24])
    dataset = tf.data.Dataset.from_tensor_slices((x[24:], y[24:] * 3.0)).batch(8)
    return arrays, dataset


def _mse(module, x, y):
    return float(np.mean((np.asarray(module(x)) - y) ** 2))


class Scored(BoringModule):
    def configure_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]


def test_each_dataset_is_reported_under_its_index_with_its_own_values(tmp_path):
    arrays, dataset = _datasets()
    module = Scored()
    trainer = quiet_trainer(max_epochs=2, logger=kt.loggers.CSVLogger(tmp_path), num_sanity_val_steps=0)
    trainer.fit(module, regression_data(), val_data=[arrays, dataset], batch_size=16)
    metrics = trainer.callback_metrics
    assert {"val_loss/dataloader_idx_0", "val_mae/dataloader_idx_0", "val_loss/dataloader_idx_1",
            "val_mae/dataloader_idx_1"} <= set(metrics)
    assert "val_loss" not in metrics
    x1, y1 = (np.concatenate(part) for part in zip(*dataset.as_numpy_iterator()))
    assert metrics["val_loss/dataloader_idx_0"] == pytest.approx(_mse(module, *arrays), rel=1e-5)
    assert metrics["val_loss/dataloader_idx_1"] == pytest.approx(_mse(module, x1, y1), rel=1e-5)
    assert trainer.num_val_batches == [2, 3]  # Lightning's list, one count per dataset
    with open(trainer.logger.log_dir + "/metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["val_loss/dataloader_idx_1"]]
    assert len(rows) == 2 and float(rows[-1]["val_loss/dataloader_idx_1"]) == pytest.approx(
        metrics["val_loss/dataloader_idx_1"])


def test_validate_on_several_datasets_returns_each_ones_keys_and_forgets_them_after():
    arrays, dataset = _datasets()
    module, trainer = BoringModule(), quiet_trainer(max_epochs=1)
    trainer.fit(module, regression_data())
    both = trainer.validate(module, data=[arrays, dataset])
    single = [trainer.validate(module, data=data) for data in (arrays, dataset)]
    assert sorted(both) == ["val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1"]
    assert both["val_loss/dataloader_idx_0"] == pytest.approx(single[0]["val_loss"])
    assert both["val_loss/dataloader_idx_1"] == pytest.approx(single[1]["val_loss"])
    assert not [k for k in trainer.callback_metrics if "dataloader_idx" in k]  # the last run's only


def test_test_runs_on_several_datasets_too():
    arrays, dataset = _datasets()
    module, trainer = BoringModule(), quiet_trainer(max_epochs=1)
    trainer.fit(module, regression_data())
    results = trainer.test(module, data=[dataset, arrays])
    assert sorted(results) == ["test_loss/dataloader_idx_0", "test_loss/dataloader_idx_1"]
    assert trainer.num_test_batches == [3, 1]
    assert trainer.predict(module, arrays[0]).shape == (24, 1)  # prediction runs on one


class ByDataset(BoringModule):
    """Logs which dataset it saw, and weighs the second dataset's loss by 10 (a Python branch)."""

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        loss = keras.ops.mean(keras.losses.mean_squared_error(y, self(x)))
        self.log("seen", float(dataloader_idx))
        return loss * (10.0 if dataloader_idx == 1 else 1.0)


def test_validation_step_gets_the_index_of_its_dataset():
    arrays, dataset = _datasets()
    module, trainer = ByDataset(), quiet_trainer(max_epochs=1)
    trainer.fit(module, regression_data(), val_data=[arrays, arrays])
    metrics = trainer.callback_metrics
    assert metrics["seen/dataloader_idx_0"] == 0.0 and metrics["seen/dataloader_idx_1"] == 1.0
    assert metrics["val_loss/dataloader_idx_1"] == pytest.approx(10 * metrics["val_loss/dataloader_idx_0"])
    assert trainer.validate(module, data=arrays)["seen"] == 0.0  # one dataset: the default


class Recorder(kt.Callback):
    def __init__(self):
        self.with_index, self.without = [], []

    def on_validation_batch_end(self, trainer, module, outputs, batch_idx, dataloader_idx=0):
        self.with_index.append((trainer.sanity_checking, dataloader_idx, trainer.dataloader_idx, batch_idx))


class OldStyle(kt.Callback):
    def __init__(self):
        self.calls = 0

    def on_validation_batch_end(self, trainer, module, outputs, batch_idx):
        self.calls += 1


def test_batch_hooks_that_name_dataloader_idx_get_it_and_limits_apply_per_dataset():
    arrays, dataset = _datasets()
    recorder, old = Recorder(), OldStyle()
    trainer = quiet_trainer(max_epochs=1, callbacks=[recorder, old], limit_val_batches=2,
                            num_sanity_val_steps=1)
    trainer.fit(BoringModule(), regression_data(), val_data=[arrays, dataset])
    assert trainer.num_val_batches == [1, 2]  # the arrays have one batch of 32 rows
    assert recorder.with_index == [(True, 0, 0, 0), (True, 1, 1, 0),  # the sanity check: 1 each
                                   (False, 0, 0, 0), (False, 1, 1, 0), (False, 1, 1, 1)]
    assert old.calls == 5 and trainer.dataloader_idx is None


def test_a_monitor_on_the_plain_key_names_the_keys_of_each_dataset(tmp_path):
    arrays, dataset = _datasets()
    checkpoint = kt.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val_loss")
    trainer = quiet_trainer(max_epochs=1, callbacks=[checkpoint])
    with pytest.raises(ValueError, match=r"could not find 'val_loss'.*val_loss/dataloader_idx_0"):
        trainer.fit(BoringModule(), regression_data(), val_data=[arrays, dataset])


def test_a_checkpoint_monitoring_one_dataset_keeps_its_best_without_making_folders(tmp_path):
    arrays, dataset = _datasets()
    checkpoint = kt.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val_loss/dataloader_idx_1",
                                              filename="{epoch}-{val_loss/dataloader_idx_1:.4f}")
    trainer = quiet_trainer(max_epochs=2, callbacks=[checkpoint])
    trainer.fit(BoringModule(), regression_data(), val_data=[arrays, dataset])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []
    assert checkpoint.best_model_score == pytest.approx(
        min(trainer.history["val_loss/dataloader_idx_1"]))
    assert "val_loss_dataloader_idx_1=" in checkpoint.best_model_path


def test_a_fit_resumed_with_several_datasets_ends_as_an_uninterrupted_one(tmp_path):
    arrays, dataset = _datasets()

    def fit(epochs, ckpt_path=None):
        kt.seed_everything(0)
        module = BoringModule()
        trainer = quiet_trainer(max_epochs=epochs, enable_checkpointing=True, default_root_dir=tmp_path)
        trainer.fit(module, regression_data(), val_data=[arrays, dataset], ckpt_path=ckpt_path)
        return trainer.callback_metrics, module.get_weights()

    fit(1)
    resumed, resumed_weights = fit(2, ckpt_path=str(next(tmp_path.rglob("*.ckpt"))))
    (tmp_path / "again").mkdir()
    whole, weights = fit(2)
    assert resumed == pytest.approx(whole)
    for a, b in zip(resumed_weights, weights):
        np.testing.assert_array_equal(a, b)


def test_a_datamodule_can_return_several_validation_datasets():
    arrays, dataset = _datasets()

    class Data(kt.DataModule):
        def train_dataset(self):
            return regression_data()

        def val_dataset(self):
            return [arrays, dataset]

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), datamodule=Data())
    assert "val_loss/dataloader_idx_1" in trainer.callback_metrics


def test_batch_size_is_for_array_data_and_leaves_a_validation_dataset_alone():
    _, dataset = _datasets()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), regression_data(), val_data=dataset, batch_size=16)  # Keras's fit does
    assert trainer.num_val_batches == 3 and "val_loss" in trainer.callback_metrics


@pytest.mark.parametrize(("call", "message"), [
    (lambda t, a, d: t.fit(BoringModule(), regression_data(), val_data=[a[0], d]),
     r"either several datasets .* or the arrays of one dataset"),
    (lambda t, a, d: t.fit(BoringModule(), [a, a]), r"fit runs on one dataset.*train_data=\[2 datasets\]"),
    (lambda t, a, d: t.predict(BoringModule(), [a, a]), r"predict runs on one dataset"),
])
def test_lists_of_datasets_where_one_is_needed_are_refused(call, message):
    arrays, dataset = _datasets()
    with pytest.raises(TypeError, match=message):
        call(quiet_trainer(max_epochs=1), arrays, dataset)


def test_an_epoch_that_does_not_validate_reports_no_stale_values_of_any_set():
    arrays, dataset = _datasets()
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=2)
    trainer.fit(BoringModule(), regression_data(), val_data=[arrays, dataset])
    for key in ("val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1"):
        values = trainer.history[key]
        assert values[0] is None and values[1] is not None and values[2] is None, (key, values)
