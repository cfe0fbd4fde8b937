import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


class Logs(BoringModule):
    """Logs the batch index in several ways from the compiled steps."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        index = tf.cast(batch_idx, tf.float32)
        self.log("last_idx", index)  # defaults in training: on_step only
        self.log("idx_mean", index, on_step=False, on_epoch=True)
        self.log("idx", index, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict({"idx_max": index, "idx_sum": index}, on_step=False, on_epoch=True,
                      reduce_fx="max")
        self.log("hidden", index, logger=False)
        self.log("idx_synced", index, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss = super().validation_step(batch, batch_idx)
        self.log("val_idx", tf.cast(batch_idx, tf.float32))  # defaults in validation: on_epoch
        return loss


def test_log_options_inside_compiled_steps():
    trainer = quiet_trainer(max_epochs=2)
    # 16 rows with batch 5: batches of 5, 5, 5, 1 -> batch-size-weighted mean of indices
    x, y = regression_data(rows=16)
    trainer.fit(Logs(), train_data=(x, y), val_data=(x[:10], y[:10]), batch_size=5)
    metrics = trainer.callback_metrics
    weighted = (0 * 5 + 1 * 5 + 2 * 5 + 3 * 1) / 16
    assert metrics["last_idx"] == 3.0
    assert metrics["idx_mean"] == pytest.approx(weighted)
    assert metrics["idx_step"] == 3.0 and metrics["idx_epoch"] == pytest.approx(weighted)
    assert "idx" not in metrics
    assert metrics["idx_max"] == 3.0 and metrics["idx_sum"] == 3.0
    assert metrics["idx_synced"] == pytest.approx(weighted)  # one device: sync_dist changes nothing
    assert metrics["val_idx"] == pytest.approx(0.5)  # batches 0 and 1, five rows each
    assert "idx_step" in trainer.progress_bar_metrics and "idx_mean" not in trainer.progress_bar_metrics
    assert "loss" in trainer.progress_bar_metrics and "val_loss" in trainer.progress_bar_metrics
    assert "hidden" in metrics and "hidden" not in trainer.logged_metrics


def test_log_rejects_non_scalars_and_bad_options():
    class Vector(BoringModule):
        def training_step(self, batch, batch_idx):
            self.log("v", batch[0])
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match=r"self.log\('v', value\) needs a scalar value.*\(None, 3\)"):
        quiet_trainer(max_epochs=1).fit(Vector(), train_data=regression_data(8))

    class BadReduce(BoringModule):
        def training_step(self, batch, batch_idx):
            self.log("v", 1.0, reduce_fx="median")
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match=r"Received: reduce_fx='median'"):
        quiet_trainer(max_epochs=1).fit(BadReduce(), train_data=regression_data(8))

    class Mixed(BoringModule):
        def training_step(self, batch, batch_idx):
            self.log("v", 1.0, sync_dist=True)
            self.log("v", 2.0)
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match=r"self.log\('v', ...\) was called with different .*sync_dist"):
        quiet_trainer(max_epochs=1).fit(Mixed(), train_data=regression_data(8))


def test_values_reach_python_only_when_read():
    """The loop itself never converts; a callback that reads pays for it."""
    reads = []

    class Reader(kt.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch_idx):
            assert tf.is_tensor(outputs["loss"])  # still a tensor
            reads.append(trainer.callback_metrics["loss"])

    trainer = quiet_trainer(max_epochs=1, callbacks=[Reader()])
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=4)
    assert len(reads) == 4 and len(set(reads)) == 4  # the running mean changes every batch


def test_log_from_hook_with_tensor():
    class HookLog(BoringModule):
        def on_train_epoch_end(self):
            self.log("w_norm", keras.ops.sum(self.out.kernel ** 2), prog_bar=True)

    trainer = quiet_trainer(max_epochs=1)
    module = HookLog()
    trainer.fit(module, train_data=regression_data(8))
    assert trainer.callback_metrics["w_norm"] == pytest.approx(
        float(np.sum(module.out.kernel.numpy() ** 2)))
    assert "w_norm" in trainer.progress_bar_metrics


def test_custom_validation_step_without_loss_logs_its_own_values():
    class OwnMetric(BoringModule):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_mae", keras.ops.mean(keras.ops.abs(self(x) - y)))

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(OwnMetric(), train_data=regression_data(8), val_data=regression_data(8))
    assert "val_mae" in trainer.callback_metrics and "val_loss" not in trainer.callback_metrics


def test_metrics_are_separate_objects_per_stage():
    class Shared(BoringModule):
        def __init__(self):
            super().__init__()
            self.mae = keras.metrics.MeanAbsoluteError(name="mae")

        def configure_metrics(self):
            return [self.mae]  # the same object every call

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Shared(), train_data=regression_data(16), val_data=regression_data(8, seed=1) )
    metrics = trainer.callback_metrics
    assert metrics["mae"] != metrics["val_mae"]


def test_metric_named_loss_is_rejected():
    class Clash(BoringModule):
        def configure_metrics(self):
            return [keras.metrics.Mean(name="loss")]

    with pytest.raises(ValueError, match="named 'loss'"):
        quiet_trainer(max_epochs=1).fit(Clash(), train_data=regression_data(8))


def test_configure_metrics_must_return_metrics():
    class NotMetrics(BoringModule):
        def configure_metrics(self):
            return ["accuracy"]

    with pytest.raises(TypeError, match=r"keras.metrics.Metric objects. Received an item 'accuracy'"):
        quiet_trainer(max_epochs=1).fit(NotMetrics(), train_data=regression_data(8))


class LogsTheLoss(BoringModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss", loss * 2)
        return loss


class SameNameTwice(BoringModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("mae", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss = super().validation_step(batch, batch_idx)
        self.log("mae", loss)
        return loss


@pytest.mark.parametrize(("module", "match"), [
    (LogsTheLoss, r"self.log\('loss'\) in training_step would replace the built-in `loss` of the "
                  r"train stage.*e.g. 'my_loss'"),
    (SameNameTwice, r"self.log\('mae'\) in (training|validation)_step would replace "
                    r"self.log\('mae'\) in (validation|training)_step.*'val_mae' in validation_step"),
])
def test_a_logged_name_never_replaces_another_value_silently(module, match):
    x, y = regression_data(8)
    with pytest.raises(ValueError, match=match):
        quiet_trainer(max_epochs=1).fit(module(), train_data=(x, y), val_data=(x, y))


def test_lightning_style_validation_logs_its_own_val_loss():
    class LogsValLoss(BoringModule):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", keras.ops.mean(keras.losses.mean_squared_error(y, self(x))) + 100)
            # returns None: the logged value is the only val_loss

    x, y = regression_data(8)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(LogsValLoss(), train_data=(x, y), val_data=(x, y))
    assert trainer.callback_metrics["val_loss"] > 100


class TwoHeads(kt.TrainModule):
    """A multi-output model: a class (3-way) and a number, keyed by name."""

    def __init__(self):
        super().__init__()
        self.body = keras.layers.Dense(8, activation="relu")
        self.department = keras.layers.Dense(3)
        self.priority = keras.layers.Dense(1)

    def call(self, x, training=False):
        h = self.body(x)
        return {"department": self.department(h), "priority": self.priority(h)}

    def loss(self, y_true, y_pred):
        return (keras.losses.sparse_categorical_crossentropy(
            y_true["department"], y_pred["department"], from_logits=True)
            + keras.losses.mean_squared_error(y_true["priority"], y_pred["priority"]))

    def configure_optimizer(self):
        return keras.optimizers.Adam(0.01)

    def configure_metrics(self):
        return {"department": [keras.metrics.SparseCategoricalAccuracy(name="acc")],
                "priority": keras.metrics.MeanAbsoluteError(name="mae")}


def test_metrics_per_output_are_named_as_keras_names_them():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = {"department": rng.integers(0, 3, 64), "priority": rng.normal(size=(64, 1)).astype("float32")}
    trainer = quiet_trainer(max_epochs=2)
    module = TwoHeads()
    trainer.fit(module, train_data=(x, y), val_data=(x, y))
    assert {"department_acc", "priority_mae", "val_department_acc", "val_priority_mae"} <= set(
        trainer.callback_metrics)
    result = trainer.validate(data=(x, y), batch_size=64)
    out = module(x)
    accuracy = np.mean(np.argmax(out["department"], -1) == y["department"])
    mae = np.mean(np.abs(out["priority"].numpy() - y["priority"]))
    assert result["val_department_acc"] == pytest.approx(accuracy)
    assert result["val_priority_mae"] == pytest.approx(mae, rel=1e-5)


def test_metrics_for_an_output_the_model_does_not_have_are_refused():
    class Misnamed(TwoHeads):
        def configure_metrics(self):
            return {"dept": [keras.metrics.SparseCategoricalAccuracy(name="acc")]}

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = {"department": rng.integers(0, 3, 8), "priority": rng.normal(size=(8, 1)).astype("float32")}
    with pytest.raises(ValueError, match=r"metrics for output 'dept', but the targets have outputs "
                                         r"\['department', 'priority'\]"):
        quiet_trainer(max_epochs=1).fit(Misnamed(), train_data=(x, y))
