import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from tests.helpers import BoringClassifier, BoringModule, classification_data, quiet_trainer, regression_data


def test_subclass_loss_method_is_not_hidden_by_keras_init():
    module = BoringModule()
    # keras.Model.__init__ assigns self.loss = None; the subclass's method must win.
    assert "loss" not in module.__dict__
    value = module.loss(np.zeros((2, 1), "float32"), np.ones((2, 1), "float32"))
    np.testing.assert_allclose(np.asarray(value), [1.0, 1.0])


def test_keras_features_keep_working(tmp_path):
    module = BoringModule()
    x, _ = regression_data(rows=8)
    assert tuple(module(x).shape) == (8, 1)
    assert module.predict(x, verbose=0).shape == (8, 1)
    lines = []
    module.summary(print_fn=lambda line, **_: lines.append(line))
    assert any("Total params" in line for line in lines)
    path = tmp_path / "w.weights.h5"
    module.save_weights(path)
    other = BoringModule()
    other(x)
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x, verbose=0), module.predict(x, verbose=0))


@pytest.mark.parametrize("method", ["compile", "fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_keras_training_api_points_to_trainer(method):
    with pytest.raises(RuntimeError, match=r"kt\.Trainer"):
        getattr(BoringModule(), method)()


def test_save_hyperparameters_reads_init_arguments():
    class WithHparams(BoringModule):
        def __init__(self, units=3, lr=0.1, *, name_suffix="x", **extra):
            super().__init__(units=units, lr=lr)
            self.save_hyperparameters(ignore="name_suffix")

    module = WithHparams(units=5, depth=2)
    assert dict(module.hparams) == {"units": 5, "lr": 0.1, "depth": 2}
    assert module.hparams.units == 5 and module.hparams["depth"] == 2
    with pytest.raises(AttributeError, match="No hyperparameter named 'nope'"):
        module.hparams.nope


def test_save_hyperparameters_rejects_unknown_names():
    class Bad(BoringModule):
        def __init__(self, units=3):
            super().__init__()
            self.save_hyperparameters("unitz")

    with pytest.raises(ValueError, match=r"not arguments of __init__.*Received: \['unitz'\]"):
        Bad()


def test_log_outside_a_run_is_an_error():
    with pytest.raises(RuntimeError, match=r"BoringModule.log\('x', \.\.\.\) was called outside"):
        BoringModule().log("x", 1.0)


def test_module_without_loss_or_training_step_names_the_class():
    class NoLoss(kt.TrainModule):
        def __init__(self):
            super().__init__()
            self.out = keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.out(x)

        def configure_optimizer(self):
            return keras.optimizers.SGD()

    with pytest.raises(NotImplementedError, match=r"^NoLoss defines neither loss\(self, y_true, y_pred\) nor "
                                                  r"training_step\(\), and its call added no loss"):
        quiet_trainer(max_epochs=1).fit(NoLoss(), train_data=regression_data(rows=8))


@pytest.mark.parametrize("returned", [None, "adam", keras.losses.MeanSquaredError()])
def test_configure_optimizer_must_return_an_optimizer(returned):
    class BadOptimizer(BoringModule):
        def configure_optimizer(self):
            return returned

    with pytest.raises(TypeError, match=r"BadOptimizer.configure_optimizer\(\) must return a "
                                        r"keras.optimizers.Optimizer.*Received"):
        quiet_trainer(max_epochs=1).fit(BadOptimizer(), train_data=regression_data(rows=8))


def test_dict_of_optimizers_needs_manual_optimization():
    class TwoOptimizers(BoringModule):
        def configure_optimizer(self):
            return {"a": keras.optimizers.SGD(), "b": keras.optimizers.SGD()}

    with pytest.raises(TypeError, match="automatic_optimization = False"):
        quiet_trainer(max_epochs=1).fit(TwoOptimizers(), train_data=regression_data(rows=8))


def test_batch_the_default_step_cannot_unpack():
    x, y = regression_data(rows=8)
    four = tf.data.Dataset.from_tensor_slices((x, y, y[:, 0], y[:, 0])).batch(4)
    with pytest.raises(ValueError, match=r"BoringModule.training_step received a batch that is a "
                                         r"tuple of 4 elements.*override training_step"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=four)


def test_output_shape_mismatch_surfaces_keras_message_and_step():
    class WrongUnits(kt.TrainModule):
        def __init__(self):
            super().__init__()
            self.out = keras.layers.Dense(2)  # the targets have 3 columns

        def call(self, x, training=False):
            return self.out(x)

        def loss(self, y_true, y_pred):
            return keras.losses.mean_squared_error(y_true, y_pred)

        def configure_optimizer(self):
            return keras.optimizers.SGD()

    x, _ = regression_data(rows=8)
    with pytest.raises(ValueError, match=r"WrongUnits.training_step: loss\(y_true, y_pred\) failed "
                                         r"for y_true of shape \(None, 3\) and y_pred of shape "
                                         r"\(None, 2\).*Keras said"):
        quiet_trainer(max_epochs=1).fit(WrongUnits(), train_data=(x, np.zeros((8, 3), "float32")))


def test_inputs_without_targets_cannot_use_the_default_loss():
    x, _ = regression_data(rows=8)
    with pytest.raises(ValueError, match="training_step: the batch has no targets"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), train_data=x)


def test_sample_weight_is_passed_to_a_three_argument_loss():
    seen = []

    class Weighted(BoringModule):
        def loss(self, y_true, y_pred, sample_weight):
            seen.append(sample_weight)
            return keras.losses.mean_squared_error(y_true, y_pred) * sample_weight

    x, y = regression_data(rows=8)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Weighted(), train_data=(x, y, np.zeros(8, "float32")), batch_size=4)
    assert seen, "loss never received sample_weight"
    assert trainer.callback_metrics["loss"] == 0.0


def test_two_argument_loss_is_weighted_by_the_trainer():
    x, y = regression_data(rows=8)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(BoringModule(), train_data=(x, y, np.zeros(8, "float32")), batch_size=4)
    assert trainer.callback_metrics["loss"] == 0.0


def test_training_step_override_with_dict_and_without_batch_idx():
    class DictStep(BoringModule):
        def training_step(self, batch):
            x, y = batch
            loss = keras.ops.mean(self.loss(y, self(x, training=True)))
            return {"loss": loss, "double": 2 * loss}

    outputs = []

    class Grab(kt.Callback):
        def on_train_batch_end(self, trainer, module, out, batch_idx):
            outputs.append({k: float(v) for k, v in out.items()})

    trainer = quiet_trainer(max_epochs=1, callbacks=[Grab()])
    trainer.fit(DictStep(), train_data=regression_data(rows=8), batch_size=4)
    assert len(outputs) == 2
    assert outputs[-1]["double"] == pytest.approx(2 * outputs[-1]["loss"])


def test_training_step_returning_none_with_automatic_optimization():
    class ReturnsNothing(BoringModule):
        def training_step(self, batch, batch_idx):
            return None

    with pytest.raises(ValueError, match=r"ReturnsNothing.training_step returned None"):
        quiet_trainer(max_epochs=1).fit(ReturnsNothing(), train_data=regression_data(rows=8))


def test_module_trainer_and_optimizer_stay_set_after_fit():
    module = BoringModule()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(module, train_data=regression_data(rows=8))
    assert module.trainer is trainer
    assert isinstance(module.optimizer, keras.optimizers.SGD)
    assert int(module.optimizer.iterations.numpy()) == trainer.global_step == 1


def test_module_hooks_are_called_without_trainer_arguments():
    calls = []

    class Hooked(BoringModule):
        def on_train_epoch_end(self):
            calls.append(("epoch_end", self.trainer.current_epoch))
            self.log("epoch_marker", float(self.trainer.current_epoch))

    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(Hooked(), train_data=regression_data(rows=8))
    assert calls == [("epoch_end", 0), ("epoch_end", 1)]
    assert trainer.callback_metrics["epoch_marker"] == 1.0


def test_a_keras_object_as_hyperparameter_warns_with_the_fix():
    class WithBackbone(kt.TrainModule):
        def __init__(self, backbone, units=3):
            super().__init__()
            self.save_hyperparameters()
            self.backbone = backbone

    with pytest.warns(UserWarning, match=r"argument 'backbone' is a Keras Dense.*"
                                         r"save_hyperparameters\(ignore=\['backbone'\]\).*"
                                         r"load_from_checkpoint\(path, backbone=...\)"):
        WithBackbone(keras.layers.Dense(2))


@pytest.mark.parametrize("target_shape", [(16,), (16, 1)])
def test_hand_written_losses_get_targets_of_the_predictions_rank(target_shape):
    """Keras's compile makes (n,) targets and (n, 1) predictions the same rank before a loss runs;
    without it this loss would broadcast to (n, n) and train towards the mean target."""
    class HandWritten(BoringModule):
        def loss(self, y_true, y_pred):
            return keras.ops.mean(keras.ops.square(y_true - y_pred))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 3.0], "float32")).reshape(target_shape)
    module = HandWritten(lr=0.05)
    kt_trainer = quiet_trainer(max_epochs=60)
    kt_trainer.fit(module, train_data=(x, y), batch_size=16)
    assert kt_trainer.callback_metrics["loss"] < 1.0  # it fits the targets, not their mean


def test_the_module_sees_the_run_position_and_prints_on_the_chief(capsys):
    class Positions(BoringModule):
        seen = []

        def on_train_epoch_end(self):
            self.seen.append((self.current_epoch, self.global_step))
            self.print("epoch", self.current_epoch)

    module = Positions()
    assert (module.current_epoch, module.global_step) == (0, 0)  # no trainer yet
    quiet_trainer(max_epochs=2).fit(module, train_data=regression_data(8), batch_size=4)
    assert module.seen == [(0, 2), (1, 4)]
    assert capsys.readouterr().out == "epoch 0\nepoch 1\n"


class TensorBranches(BoringModule):
    """Python control flow on tensors in the user's step and loss, as the course notes'
    `@tf.function` loops allow: AutoGraph must still rewrite them (kerastrainer's own helpers in
    the step are not). `call` runs through Keras's `Layer.__call__`, which AutoGraph does not enter,
    under `Model.fit` too: there, `keras.ops.cond`."""

    def loss(self, y_true, y_pred):
        value = keras.losses.mean_squared_error(y_true, y_pred)
        for _ in tf.range(2):  # a tf.while_loop over a tensor's range
            value = value * 1.0
        return value

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if loss > 1e6:  # never true: a tf.cond in the step, not a Python bool
            loss = loss * 0.0
        return loss


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tensor_control_flow_in_user_code_is_converted(jit_compile):
    x, y = regression_data(32)
    weights = []
    for run_eagerly in (True, False):
        keras.utils.set_random_seed(0)
        module = TensorBranches()
        quiet_trainer(max_epochs=2, run_eagerly=run_eagerly, jit_compile=jit_compile).fit(
            module, train_data=(x, y), batch_size=8)
        weights.append(module.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class AddsItsLoss(kt.TrainModule):
    """A subclass without loss(): its call adds the loss, as the Keras guide's endpoint layer."""

    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(1)

    def call(self, inputs, training=False):
        prediction = self.out(inputs["x"])
        self.add_loss(keras.ops.mean(keras.ops.square(prediction - inputs["y"])))
        return prediction

    def configure_optimizer(self):
        return keras.optimizers.SGD(0.1)


def test_a_subclass_without_loss_trains_its_add_loss_terms():
    x, y = regression_data(rows=16)
    module = AddsItsLoss()
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(module, train_data={"x": x, "y": y}, val_data={"x": x, "y": y}, batch_size=8)
    assert trainer.history["loss"][-1] < trainer.history["loss"][0]
    expected = float(np.mean((module.predict({"x": x, "y": y}, verbose=0) - y) ** 2))
    assert trainer.callback_metrics["val_loss"] == pytest.approx(expected, rel=1e-4)


class HoldsALayer(kt.TrainModule):
    """Its __init__ takes a layer, which Keras's whole-model save cannot serialize as an argument."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def call(self, x, training=False):
        return self.inner(x)

    def loss(self, y_true, y_pred):
        return keras.losses.mean_squared_error(y_true, y_pred)

    def configure_optimizer(self):
        return keras.optimizers.SGD()


def test_a_module_keras_cannot_save_whole_names_the_weights_only_forms(tmp_path):
    module = HoldsALayer(keras.layers.Dense(1))
    quiet_trainer(max_epochs=1).fit(module, regression_data(rows=8), batch_size=4)
    with pytest.raises(NotImplementedError, match=r"^HoldsALayer.save\('.*m.keras'\) cannot write a "
                                                  r"whole-model file.*save_weights\('m.weights.h5'\)"):
        module.save(tmp_path / "m.keras")
    module.save_weights(tmp_path / "m.weights.h5")  # the form it names works


class BothAccuracies(BoringClassifier):
    def configure_weighted_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="acc")]  # named as the unweighted one


def test_configure_metrics_are_unweighted_and_configure_weighted_metrics_weighted():
    x, y = classification_data(rows=40)
    weights = np.random.default_rng(1).uniform(0.1, 3.0, 40).astype("float32")
    module = BothAccuracies()
    results = quiet_trainer().validate(module, data=(x, y, weights), batch_size=8)
    right = (np.argmax(module.predict(x, verbose=0), axis=1) == y).astype("float64")
    assert results["val_acc"] == pytest.approx(right.mean(), rel=1e-6)
    assert results["val_weighted_acc"] == pytest.approx((right * weights).sum() / weights.sum(), rel=1e-5)
