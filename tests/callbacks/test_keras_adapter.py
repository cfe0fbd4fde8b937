import csv

import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


class ScriptedValLoss(BoringModule):
    """Reports a scripted `val_loss` per epoch, so Keras callbacks see known values."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        return None

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.log("val_loss", self.values[self.trainer.current_epoch])


def _fit(callbacks, module=None, epochs=6):
    trainer = quiet_trainer(max_epochs=epochs, callbacks=callbacks, num_sanity_val_steps=0)
    trainer.fit(module or BoringModule(), train_data=regression_data(16), val_data=regression_data(8),
                batch_size=8)
    return trainer


def test_keras_early_stopping_stops_the_trainer():
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    trainer = _fit([stopper], ScriptedValLoss([3, 2, 2.5, 2.6, 1, 1]))
    assert trainer.current_epoch == 2 and stopper.stopped_epoch == 2


def test_keras_csv_logger_writes_train_and_val_columns(tmp_path):
    path = tmp_path / "log.csv"
    _fit([keras.callbacks.CSVLogger(str(path))], epochs=3)
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert {"loss", "val_loss"} <= set(rows[0])
    assert float(rows[2]["loss"]) > 0


def test_terminate_on_nan_stops_at_the_batch():
    class Explodes(BoringModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * keras.ops.where(batch_idx >= 1, np.nan, 1.0)

    trainer = _fit([keras.callbacks.TerminateOnNaN()], Explodes(), epochs=5)
    assert trainer.global_step == 2 and trainer.should_stop


class NaNInSecondEpoch(BoringModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * keras.ops.where(self.optimizer.iterations >= 2, np.nan, 1.0)  # epoch 1's first batch


def test_an_epoch_stopped_before_its_validation_reports_no_validation_values(tmp_path):
    path = tmp_path / "log.csv"
    trainer = _fit([keras.callbacks.TerminateOnNaN(), keras.callbacks.CSVLogger(str(path))],
                   NaNInSecondEpoch(), epochs=4)
    assert trainer.current_epoch == 1 and np.isnan(trainer.history["loss"][1])
    assert trainer.history["val_loss"][0] is not None and trainer.history["val_loss"][1] is None
    assert "val_loss" not in trainer.callback_metrics  # not epoch 0's value, as if it were epoch 1's
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["val_loss"] == "NA"  # Keras's CSVLogger's word for a missing value


def test_lambda_callback_sees_model_params_and_float_logs():
    seen = []
    callback = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((epoch, dict(logs))),
    )
    trainer = _fit([callback], epochs=2)
    assert callback.model is trainer.module
    assert callback.params["epochs"] == 2 and callback.params["steps"] == 2
    assert [e for e, _ in seen] == [0, 1]
    assert all(isinstance(v, float) for _, logs in seen for v in logs.values())
    assert {"loss", "val_loss"} <= set(seen[0][1])


def test_lambda_callback_batch_hooks_get_running_loss():
    batches = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batches.append((batch, logs["loss"])))
    _fit([callback], epochs=1)
    assert [b for b, _ in batches] == [0, 1]


def test_reduce_lr_on_plateau_changes_the_learning_rate_and_shares_logs(tmp_path):
    path = tmp_path / "log.csv"
    module = ScriptedValLoss([3, 3, 3, 3, 3, 3])
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5)
    _fit([reduce, keras.callbacks.CSVLogger(str(path))], module, epochs=4)
    # epoch 0 sets the best; epochs 1, 2, 3 each exceed patience=1 and halve the rate
    assert float(module.optimizer.learning_rate.numpy()) == pytest.approx(0.05 * 0.5**3)
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert "learning_rate" in rows[0]  # added by ReduceLROnPlateau, read by CSVLogger


def test_keras_and_kerastrainer_callbacks_mix():
    order = []

    class Mine(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            order.append("kt")

    keras_cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: order.append("keras"))
    _fit([keras_cb, Mine()], epochs=1)
    assert order == ["keras", "kt"]


def _fit_classifier(callbacks, epochs=3):
    from tests.helpers import BoringClassifier, classification_data

    x, y = classification_data(60)
    trainer = quiet_trainer(max_epochs=epochs, callbacks=callbacks)
    module = BoringClassifier()
    trainer.fit(module, train_data=(x, y), val_data=(x, y), batch_size=16)
    return trainer, module


@pytest.mark.parametrize("make", [
    lambda tmp: keras.callbacks.EarlyStopping(monitor="val_acc", patience=1),
    lambda tmp: keras.callbacks.ReduceLROnPlateau(monitor="val_acc", patience=1),
    lambda tmp: keras.callbacks.ModelCheckpoint(str(tmp / "best.weights.h5"), monitor="val_acc",
                                                save_best_only=True, save_weights_only=True),
], ids=["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint"])
def test_keras_monitors_find_the_direction_of_a_configured_metric(tmp_path, make):
    callback = make(tmp_path)
    _fit_classifier([callback])  # Keras raised "isn't able to automatically determine" before
    assert callback.mode == "max"  # accuracy goes up


def test_keras_tensorboard_and_learning_rate_scheduler_work(tmp_path):
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    _, module = _fit_classifier([board, schedule])
    assert float(module.optimizer.learning_rate.numpy()) == pytest.approx(0.05 / 8)
    assert list((tmp_path / "tb" / "train").iterdir()) and list((tmp_path / "tb" / "validation").iterdir())


@pytest.mark.parametrize(("callback", "match"), [
    (keras.callbacks.BackupAndRestore("backup"), r"BackupAndRestore does not work.*ckpt_path='last'"),
    (keras.callbacks.ProgbarLogger(), r"ProgbarLogger does not work.*enable_progress_bar"),
])
def test_keras_callbacks_that_would_be_inert_are_refused(callback, match):
    with pytest.raises(ValueError, match=match):
        quiet_trainer(callbacks=[callback])
