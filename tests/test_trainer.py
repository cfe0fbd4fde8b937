import dataclasses
import datetime
import inspect
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer.flags import FLAG_NAMES
from kerastrainer.stages import TEST, TRAIN, VAL
from tests.helpers import (BoringClassifier, BoringModule, classification_data, quiet_trainer,
                           regression_data)


@pytest.mark.parametrize(
    ("flags", "error", "match"),
    [
        ({"max_epochs": -3}, ValueError, r"`max_epochs` must be an integer >= -1.*Received: max_epochs=-3"),
        ({"max_epochs": 2.5}, TypeError, r"Received: max_epochs=2.5"),
        ({"min_epochs": -1}, ValueError, r"Received: min_epochs=-1"),
        ({"max_steps": -2}, ValueError, r"Received: max_steps=-2"),
        ({"limit_train_batches": -1}, ValueError, r"Received: limit_train_batches=-1"),
        ({"limit_val_batches": 1.5}, ValueError, r"float in \[0, 1\].*Received: limit_val_batches=1.5"),
        ({"limit_test_batches": "all"}, TypeError, r"Received: limit_test_batches='all'"),
        ({"val_check_interval": 0}, ValueError, r"Received: val_check_interval=0"),
        ({"val_check_interval": 1.5}, ValueError, r"Received: val_check_interval=1.5"),
        ({"check_val_every_n_epoch": 0}, ValueError, r"Received: check_val_every_n_epoch=0"),
        ({"num_sanity_val_steps": -2}, ValueError, r"Received: num_sanity_val_steps=-2"),
        ({"fast_dev_run": -1}, ValueError, r"Received: fast_dev_run=-1"),
        ({"steps_per_execution": 0}, ValueError, r"Received: steps_per_execution=0"),
        ({"log_every_n_steps": 0}, ValueError, r"Received: log_every_n_steps=0"),
        ({"jit_compile": "yes"}, TypeError, r"Received: jit_compile='yes'"),
        ({"max_time": -5}, ValueError, r"Received: max_time=-5"),
        ({"max_time": "1:2"}, ValueError, r"DD:HH:MM:SS.*Received: max_time='1:2'"),
        ({"strategy": "tpu"}, ValueError, r"Received: strategy='tpu'"),
        ({"max_time": float("nan")}, ValueError, r"Received: max_time=nan"),
        ({"max_time": float("inf")}, ValueError, r"Received: max_time=inf"),
        ({"gradient_clip_val": float("inf")}, ValueError, r"finite.*Received: gradient_clip_val=inf"),
        ({"gradient_clip_val": float("nan")}, ValueError, r"finite.*Received: gradient_clip_val=nan"),
        ({"limit_train_batches": float("nan")}, ValueError, r"Received: limit_train_batches=nan"),
        ({"val_check_interval": float("nan")}, ValueError, r"Received: val_check_interval=nan"),
        ({"callbacks": ["not a callback"]}, TypeError, r"`callbacks` must hold"),
        ({"callbacks": kt.callbacks.EarlyStopping}, TypeError,
         r"^`callbacks` got the class EarlyStopping, not a callback: create one.*EarlyStopping\(\.\.\.\)"),
        ({"callbacks": 3}, TypeError, r"^`callbacks` must be a callback or a list of them.*Received: callbacks=3"),
        ({"default_root_dir": 123}, TypeError, r"^`default_root_dir` must be a folder path.*Received: default_root_dir=123"),
        ({"min_epochs": 5, "max_epochs": 2}, ValueError,
         r"^min_epochs is more than max_epochs.*Received: min_epochs=5, max_epochs=2"),
    ],
)
def test_bad_flags_name_the_flag_and_value(flags, error, match):
    with pytest.raises(error, match=match):
        kt.Trainer(**flags)


@pytest.mark.parametrize(("args", "match"), [
    ((5,), r"^Trainer takes keyword arguments only\. Did you mean Trainer\(max_epochs=5\)\?.*"
           r"Received positional arguments: 5"),
    (([],), r"^Trainer takes keyword arguments only\. Did you mean Trainer\(callbacks=\[\.\.\.\]\)"),
    (("gpu",), r"^Trainer takes keyword arguments only\. The flags.*Received positional arguments: 'gpu'"),
])
def test_positional_arguments_are_refused_with_the_flag_meant(args, match):
    with pytest.raises(TypeError, match=match):
        kt.Trainer(*args)


@pytest.mark.parametrize(("flags", "match"), [
    ({"epochs": 3}, r"^Trainer has no flag `epochs`\. Use max_epochs instead\..*Received: epochs=3"),
    ({"accelerator": "gpu"}, r"^Trainer has no flag `accelerator`\. Use strategy \(kerastrainer uses"),
    ({"devices": 2}, r"^Trainer has no flag `devices`\. Use strategy='mirrored'"),
    ({"max_epoch": 3}, r"^Trainer has no flag `max_epoch`\. Did you mean `max_epochs`\?"),
])
def test_keras_and_lightning_trainer_names_get_the_flag_to_use(flags, match):
    with pytest.raises(TypeError, match=match):
        kt.Trainer(**flags)


@pytest.mark.parametrize(("entry", "kwargs", "match"), [
    ("fit", {"validation_data": "v"}, r"^Trainer\.fit\(\) has no argument `validation_data`\. Use val_data "
                                       r"instead\. Received: validation_data='v'"),
    ("fit", {"train_dataloaders": "d"}, r"^Trainer\.fit\(\) has no argument `train_dataloaders`\. Use "
                                         r"train_data instead"),
    ("fit", {"x": np.zeros((4, 3))}, r"^Trainer\.fit\(\) has no argument `x`\. Use train_data=\(x, y\).*"
                                      r"Received: x=<ndarray of shape \(4, 3\)>"),
    ("fit", {"batchsize": 8}, r"^Trainer\.fit\(\) has no argument `batchsize`\. Did you mean `batch_size`"),
    ("validate", {"dataloaders": "d"}, r"^Trainer\.validate\(\) has no argument `dataloaders`\. Use data"),
    ("test", {"x": 1}, r"^Trainer\.test\(\) has no argument `x`\. Use data=\(x, y\)"),
    ("predict", {"return_prediction": True}, r"^Trainer\.predict\(\) has no argument `return_prediction`\. "
                                              r"Did you mean `return_predictions`"),
])
def test_keras_and_lightning_run_arguments_get_the_argument_to_use(entry, kwargs, match):
    with pytest.raises(TypeError, match=match):
        getattr(quiet_trainer(), entry)(BoringModule(), **kwargs)


def test_min_epochs_up_to_max_epochs_and_no_limit_are_accepted():
    assert kt.Trainer(min_epochs=2, max_epochs=2).min_epochs == 2
    assert kt.Trainer(min_epochs=5, max_epochs=-1).min_epochs == 5


def test_a_file_as_default_root_dir_is_refused(tmp_path):
    (tmp_path / "runs").write_text("")
    with pytest.raises(ValueError, match=r"^`default_root_dir` must be a folder.*is a file"):
        kt.Trainer(default_root_dir=str(tmp_path / "runs"))


def test_a_module_that_skipped_super_init_is_named():
    class NoSuper(kt.TrainModule):
        def __init__(self):  # noqa: D107 - the mistake under test
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(RuntimeError, match=r"^NoSuper.__init__ did not call super\(\).__init__\(\)"):
        quiet_trainer().fit(NoSuper(), train_data=regression_data(), batch_size=4)


def test_flags_are_keyword_only():
    with pytest.raises(TypeError):
        kt.Trainer(3)


def test_an_unknown_flag_is_named_with_the_closest_one():
    with pytest.raises(TypeError, match=r"^Trainer has no flag `max_epoch`\. Did you mean `max_epochs`\?.*"
                                        r"Received: max_epoch=3"):
        kt.Trainer(max_epoch=3)


def test_the_signature_lists_the_flags():
    parameters = inspect.signature(kt.Trainer).parameters
    assert parameters["max_epochs"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(parameters) == list(FLAG_NAMES)


def test_flags_are_a_frozen_value_beside_the_run_objects():
    trainer = quiet_trainer(max_epochs=2, fast_dev_run=True)
    assert trainer.flags.max_epochs == trainer.max_epochs == 1  # fast_dev_run applied, once
    assert trainer.flags.strategy == "auto"
    assert isinstance(trainer.strategy, tf.distribute.Strategy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trainer.flags.max_epochs = 5
    with pytest.raises(AttributeError, match=r"^`trainer.max_epochs` is a flag, fixed when the Trainer is "
                                             r"built.*Received: trainer.max_epochs=5"):
        trainer.max_epochs = 5
    assert dataclasses.replace(trainer.flags, fast_dev_run=False, max_steps=3).max_steps == 3  # checked again


def test_a_callback_that_changes_accumulation_leaves_the_flag_alone():
    schedule = kt.callbacks.GradientAccumulationScheduler({0: 1, 1: 2})
    trainer = quiet_trainer(max_epochs=2, callbacks=[schedule])
    trainer.fit(BoringModule(), train_data=regression_data(rows=16), batch_size=4)
    assert trainer.accumulate_grad_batches == 2
    assert trainer.global_step == 4 + 2
    assert trainer.flags.accumulate_grad_batches == 1
    trainer.validate(data=regression_data(rows=8), batch_size=4)  # a new run starts from the flag
    assert trainer.accumulate_grad_batches == 1


def test_the_stage_is_the_run_s_stage_object():
    seen = []

    class Record(kt.Callback):
        def on_train_start(self, trainer, module):
            seen.append(trainer.stage)

        def on_validation_start(self, trainer, module):
            seen.append(trainer.stage)

        def on_test_start(self, trainer, module):
            seen.append(trainer.stage)

    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0, callbacks=[Record()])
    data = regression_data(rows=8)
    trainer.fit(BoringModule(), train_data=data, val_data=data, batch_size=4)
    trainer.validate(data=data, batch_size=4)
    trainer.test(data=data, batch_size=4)
    assert seen == [TRAIN, TRAIN, VAL, TEST]  # the fit's validation runs inside the fit
    assert trainer.stage is None


@pytest.mark.parametrize("max_time", [60, datetime.timedelta(minutes=1), {"minutes": 1}, "00:00:01:00"])
def test_max_time_forms(max_time):
    assert kt.Trainer(max_time=max_time, enable_progress_bar=False).max_time == 60.0


def test_fit_without_training_data():
    with pytest.raises(ValueError, match=r"Trainer.fit needs training data.*Received: train_data=None"):
        quiet_trainer().fit(BoringModule())


def test_fit_needs_a_train_module():
    with pytest.raises(TypeError, match="needs a kerastrainer.TrainModule.*Received: Sequential"):
        quiet_trainer().fit(keras.Sequential([keras.layers.Dense(1)]), train_data=regression_data())


def test_fit_trains_and_reports_keras_names():
    x, y = classification_data(rows=90)
    trainer = quiet_trainer(max_epochs=4)
    trainer.fit(BoringClassifier(), train_data=(x[:60], y[:60]), val_data=(x[60:], y[60:]),
                batch_size=16)
    metrics = trainer.callback_metrics
    assert set(metrics) == {"loss", "acc", "val_loss", "val_acc"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["acc"] > 0.45  # chance is 1/3
    assert trainer.history["loss"][-1] < trainer.history["loss"][0]
    assert trainer.current_epoch == 3 and trainer.global_step == 4 * 4
    assert set(trainer.test(data=(x[60:], y[60:]))) == {"test_loss", "test_acc"}


def test_epoch_metrics_are_reset_every_epoch():
    """Each epoch's `loss` equals the mean over that epoch only (weighted by batch size)."""
    x, y = regression_data(rows=10)
    per_epoch = []

    class Record(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            per_epoch.append(trainer.callback_metrics["loss"])

    class Recorded(BoringModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("sum_of_losses", loss * tf.cast(tf.shape(batch[0])[0], tf.float32),
                     on_step=False, on_epoch=True, reduce_fx="sum")
            return loss

    trainer = quiet_trainer(max_epochs=3, callbacks=[Record()])
    trainer.fit(Recorded(), train_data=(x, y), batch_size=4)
    assert per_epoch[0] != per_epoch[1] != per_epoch[2]
    assert per_epoch[-1] == pytest.approx(trainer.callback_metrics["sum_of_losses"] / 10, rel=1e-5)


def test_validation_in_mid_epoch_does_not_touch_training_metrics():
    x, y = classification_data(rows=64)
    results = {}
    for interval in (1.0, 0.5):
        keras.backend.clear_session()
        kt.seed_everything(1)
        trainer = quiet_trainer(max_epochs=2, val_check_interval=interval, num_sanity_val_steps=0)
        module = BoringClassifier()
        trainer.fit(module, train_data=(x, y), val_data=(x[:16] * 5, (y[:16] + 1) % 3), batch_size=8)
        results[interval] = trainer.callback_metrics
    assert results[0.5]["loss"] == pytest.approx(results[1.0]["loss"], abs=1e-6)
    assert results[0.5]["acc"] == pytest.approx(results[1.0]["acc"], abs=1e-6)


def test_no_retracing_across_epochs_or_for_the_last_partial_batch():
    x, y = regression_data(rows=10)  # batches of 4, 4, 2
    counts = []

    class Count(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            counts.append(dict(trainer.trace_counts))

    trainer = quiet_trainer(max_epochs=4, callbacks=[Count()])
    trainer.fit(BoringModule(), train_data=(x, y), val_data=(x, y), batch_size=4)
    assert counts[0] == counts[-1]
    assert counts[0]["train"] <= 2  # one trace (+1 when tf.function lifts new variables)


@pytest.mark.parametrize(("limit", "batches"), [(2, 2), (0.5, 2), (1.0, 4), (10, 4)])
def test_limit_train_batches(limit, batches):
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=limit)
    trainer.fit(BoringModule(), train_data=regression_data(rows=16), batch_size=4)
    assert trainer.num_training_batches == batches
    assert trainer.global_step == 2 * batches


def test_limit_fraction_giving_zero_batches():
    with pytest.raises(ValueError, match=r"limit_train_batches`=0.1 of 4 batches gives 0 batches"):
        quiet_trainer(limit_train_batches=0.1).fit(BoringModule(), train_data=regression_data(16),
                                                   batch_size=4)


def test_limit_val_batches_zero_disables_validation():
    calls = []

    class Count(kt.Callback):
        def on_validation_start(self, trainer, module):
            calls.append(1)

    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, callbacks=[Count()])
    trainer.fit(BoringModule(), train_data=regression_data(16), val_data=regression_data(8))
    assert calls == [] and "val_loss" not in trainer.callback_metrics


def test_max_steps_stops_mid_epoch_and_sets_default_epochs():
    trainer = quiet_trainer(max_steps=5)
    assert trainer.max_epochs == -1
    trainer.fit(BoringModule(), train_data=regression_data(rows=16), batch_size=4)
    assert trainer.global_step == 5 and trainer.current_epoch == 1


def test_max_steps_zero_trains_nothing_as_lightning():
    module = BoringModule()
    trainer = quiet_trainer(max_steps=0)
    trainer.fit(module, train_data=regression_data(rows=16), batch_size=4)
    assert trainer.global_step == 0
    assert int(module.optimizer.iterations.numpy()) == 0


def test_resuming_a_run_that_reached_max_steps_trains_no_further(tmp_path):
    first = quiet_trainer(max_steps=3)
    first.fit(BoringModule(), train_data=regression_data(rows=16), batch_size=4)
    path = tmp_path / "done.ckpt"
    first.save_checkpoint(str(path))
    module = BoringModule()
    again = quiet_trainer(max_steps=3)
    again.fit(module, train_data=regression_data(rows=16), batch_size=4, ckpt_path=str(path))
    assert again.global_step == 3
    assert int(module.optimizer.iterations.numpy()) == 3


def test_max_time_stops_training():
    class Slow(kt.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch_idx):
            time.sleep(0.3)

    trainer = quiet_trainer(max_epochs=100, max_time=0.5, callbacks=[Slow()])
    trainer.fit(BoringModule(), train_data=regression_data(rows=16), batch_size=4)
    assert trainer.should_stop and trainer.global_step <= 3


class StopAtOnce(kt.Callback):
    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = True


@pytest.mark.parametrize(("min_epochs", "epochs_run"), [(None, 1), (3, 3)])
def test_should_stop_respects_min_epochs(min_epochs, epochs_run):
    trainer = quiet_trainer(max_epochs=10, min_epochs=min_epochs, callbacks=[StopAtOnce()])
    trainer.fit(BoringModule(), train_data=regression_data(rows=8), batch_size=8)
    assert trainer.current_epoch + 1 == epochs_run


@pytest.mark.parametrize(
    ("interval", "every_n", "expected"),
    [(1.0, 1, [4, 8, 12]), (0.5, 1, [2, 4, 6, 8, 10, 12]), (3, 1, [3, 7, 11]), (1.0, 2, [8])],
)
def test_validation_schedule(interval, every_n, expected):
    at = []

    class Where(kt.Callback):
        def on_validation_start(self, trainer, module):
            if not trainer.sanity_checking:
                at.append(trainer.global_step)

    trainer = quiet_trainer(max_epochs=3, val_check_interval=interval,
                            check_val_every_n_epoch=every_n, callbacks=[Where()])
    trainer.fit(BoringModule(), train_data=regression_data(rows=16), val_data=regression_data(8),
                batch_size=4)
    assert at == expected


def test_val_check_interval_larger_than_epoch():
    with pytest.raises(ValueError, match=r"`val_check_interval` \(9\) must be at most the number of "
                                         r"training batches per epoch \(4\)"):
        quiet_trainer(val_check_interval=9).fit(
            BoringModule(), train_data=regression_data(16), val_data=regression_data(8), batch_size=4)


@pytest.mark.parametrize(("steps", "expected"), [(0, 0), (1, 1), (2, 2), (-1, 3)])
def test_num_sanity_val_steps(steps, expected):
    seen = []

    class Sanity(kt.Callback):
        def on_validation_batch_end(self, trainer, module, outputs, batch_idx):
            if trainer.sanity_checking:
                seen.append(batch_idx)

    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=steps, callbacks=[Sanity()])
    trainer.fit(BoringModule(), train_data=regression_data(8), val_data=regression_data(12),
                batch_size=4)
    assert len(seen) == expected


def test_fast_dev_run_runs_one_batch_of_everything():
    trainer = kt.Trainer(fast_dev_run=True, enable_progress_bar=False)
    trainer.fit(BoringModule(), train_data=regression_data(32), val_data=regression_data(32),
                batch_size=4)
    assert trainer.global_step == 1 and trainer.num_val_batches == 1
    assert trainer.predict(data=regression_data(32)[0], batch_size=4).shape == (4, 1)


def test_overfit_batches_uses_the_same_unshuffled_batches_for_validation():
    x, y = regression_data(rows=32)
    trainer = quiet_trainer(max_epochs=30, overfit_batches=1)
    trainer.fit(BoringModule(lr=0.2), train_data=(x, y), val_data=regression_data(8, seed=5),
                batch_size=4)
    assert trainer.num_training_batches == trainer.num_val_batches == 1
    assert trainer.callback_metrics["val_loss"] < 0.05


def _weights_after(trainer_flags, data_kwargs=None, seed=3):
    keras.backend.clear_session()
    kt.seed_everything(seed)
    module = BoringModule()
    x, y = regression_data(rows=40)
    trainer = quiet_trainer(max_epochs=2, **trainer_flags)
    trainer.fit(module, train_data=(x, y), val_data=(x[:12], y[:12]), batch_size=8,
                **(data_kwargs or {}))
    return [w.copy() for w in module.get_weights()], trainer


@pytest.mark.parametrize("flags", [{"steps_per_execution": 3}, {"run_eagerly": True},
                                   {"jit_compile": True}])
def test_fast_paths_give_the_same_weights(flags):
    reference, _ = _weights_after({})
    weights, trainer = _weights_after(flags)
    for a, b in zip(reference, weights):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert trainer.global_step == 10


def test_steps_per_execution_fires_batch_hooks_per_chunk():
    seen = []

    class Chunks(kt.Callback):
        def on_train_batch_start(self, trainer, module, batch_idx):
            seen.append(("start", batch_idx))

        def on_train_batch_end(self, trainer, module, outputs, batch_idx):
            seen.append(("end", batch_idx))

    trainer = quiet_trainer(max_epochs=1, steps_per_execution=3, callbacks=[Chunks()])
    trainer.fit(BoringModule(), train_data=regression_data(rows=20), batch_size=4)
    assert seen == [("start", 0), ("end", 2), ("start", 3), ("end", 4)]


def test_deterministic_runs_are_bitwise_equal():
    first, _ = _weights_after({"deterministic": True}, seed=11)
    second, _ = _weights_after({"deterministic": True}, seed=11)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_validate_and_predict_use_the_fitted_module():
    x, y = regression_data(rows=16)
    trainer = quiet_trainer(max_epochs=1)
    module = BoringModule()
    trainer.fit(module, train_data=(x, y))
    result = trainer.validate(data=(x, y))
    assert set(result) == {"val_loss"}
    np.testing.assert_allclose(trainer.predict(data=x), module.predict(x, verbose=0), atol=1e-6)


def test_validate_without_fit_builds_the_module():
    x, y = regression_data(rows=16)
    result = quiet_trainer().validate(BoringModule(), data=(x, y))
    assert result["val_loss"] > 0


@pytest.mark.parametrize("entry", ["validate", "test", "predict"])
def test_evaluation_needs_a_module_and_data(entry):
    with pytest.raises(ValueError, match=rf"Trainer.{entry} needs a module"):
        getattr(quiet_trainer(), entry)(data=regression_data())
    with pytest.raises(ValueError, match=rf"Trainer.{entry} needs data"):
        getattr(quiet_trainer(), entry)(BoringModule())


def test_predict_with_a_dict_output_structure():
    class TwoHeads(BoringModule):
        def predict_step(self, batch, batch_idx):
            y = self(batch)
            return {"y": y, "twice": 2 * y}

    x, _ = regression_data(rows=10)
    out = quiet_trainer().predict(TwoHeads(), data=x, batch_size=4)
    assert out["y"].shape == (10, 1)
    np.testing.assert_allclose(out["twice"], 2 * out["y"])


def test_a_second_fit_is_a_new_run():
    trainer = quiet_trainer(max_epochs=2, callbacks=[StopAtOnce()], min_epochs=2)
    module = BoringModule()
    trainer.fit(module, train_data=regression_data(8), batch_size=4)
    assert trainer.should_stop and trainer.global_step == 4
    trainer.fit(module, train_data=regression_data(8), batch_size=4)
    assert trainer.current_epoch == 1 and trainer.global_step == 4
    assert trainer.history["epoch"] == [0, 1]


def test_sanity_check_runs_on_validation_data_of_unknown_length():
    x, y = regression_data(16)

    def batches():
        for start in range(0, 16, 4):
            yield x[start:start + 4], y[start:start + 4]

    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=2)
    trainer.fit(BoringModule(), train_data=batches, val_data=batches)
    assert trainer.num_val_batches is None and "val_loss" in trainer.callback_metrics


def test_keras_style_fit_x_y_says_train_data():
    x, y = regression_data(8)
    with pytest.raises(TypeError, match=r"Trainer.fit\(module, x, y\) received two arrays.*"
                                        r"train_data=\(x, y\).*Received: train_data of shape "
                                        r"\(8, 3\), val_data of shape \(8, 1\)"):
        quiet_trainer(max_epochs=1).fit(BoringModule(), x, y)


class StepOnly(kt.TrainModule):
    """A training_step, no loss and no validation_step (Lightning's minimal module)."""

    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return keras.ops.mean(keras.losses.mean_squared_error(y, self(x, training=True)))

    def configure_optimizer(self):
        return keras.optimizers.SGD(0.01)


def test_validation_is_skipped_without_a_validation_step_or_loss():
    x, y = regression_data(16)
    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(UserWarning, match=r"neither validation_step\(\) nor loss\(\).*validation is "
                                         r"skipped"):
        trainer.fit(StepOnly(), train_data=(x, y), val_data=(x, y))
    assert trainer.num_val_batches == 0 and "val_loss" not in trainer.callback_metrics
    with pytest.raises(NotImplementedError, match=r"StepOnly defines neither loss\(self, y_true, "
                                                  r"y_pred\) nor validation_step\(\)"):
        trainer.validate(data=(x, y))


class ReadsTheRunLength(BoringModule):
    def configure_optimizer(self):
        self.planned = self.trainer.estimated_stepping_batches  # as a OneCycle schedule would
        return super().configure_optimizer()


@pytest.mark.parametrize(("flags", "expected"), [
    ({"max_epochs": 3}, 12),  # 16 rows, batch 4: 4 steps an epoch
    ({"max_epochs": 3, "accumulate_grad_batches": 3}, 6),  # 4 batches: 2 steps (one partial)
    ({"max_epochs": 3, "max_steps": 5}, 5),
])
def test_estimated_stepping_batches_is_known_in_configure_optimizer(flags, expected):
    module = ReadsTheRunLength()
    trainer = quiet_trainer(**flags)
    trainer.fit(module, train_data=regression_data(16), batch_size=4)
    assert module.planned == expected == trainer.estimated_stepping_batches
    assert trainer.global_step == expected


def test_estimated_stepping_batches_of_data_of_unknown_length_is_infinite():
    x, y = regression_data(16)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).filter(lambda a, b: True)
    module = ReadsTheRunLength()
    quiet_trainer(max_epochs=1).fit(module, train_data=data)
    assert module.planned == float("inf")


def test_lightning_trainer_properties_find_the_callbacks_and_optimizers(tmp_path, capsys):
    saver, stopper = kt.callbacks.ModelCheckpoint(save_last=True), kt.callbacks.EarlyStopping(monitor="loss")
    trainer = quiet_trainer(max_epochs=1, callbacks=[stopper, saver], default_root_dir=str(tmp_path))
    assert trainer.checkpoint_callback is saver and trainer.checkpoint_callbacks == [saver]
    assert trainer.early_stopping_callback is stopper and trainer.early_stopping_callbacks == [stopper]
    assert trainer.progress_bar_callback is None  # enable_progress_bar=False
    assert trainer.optimizers == []
    module = BoringModule()
    trainer.fit(module, train_data=regression_data(8), batch_size=4)
    assert trainer.optimizers == [module.optimizer]
    assert kt.Trainer(enable_checkpointing=False).checkpoint_callback is None
    assert isinstance(kt.Trainer().progress_bar_callback, kt.callbacks.RichProgressBar)
    trainer.print("from the chief", 3)
    assert capsys.readouterr().out == "from the chief 3\n"


class EndsEpochsEarly(BoringModule):
    """Lightning's rule: -1 from the module's on_train_batch_start ends the epoch there."""

    def __init__(self):
        super().__init__()
        self.epoch_ends = 0

    def on_train_batch_start(self, batch_idx):
        return -1 if batch_idx == 2 else None

    def on_train_epoch_end(self):
        self.epoch_ends += 1


def test_minus_one_from_on_train_batch_start_ends_the_epoch():
    module = EndsEpochsEarly()
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(module, train_data=regression_data(32), val_data=regression_data(8), batch_size=4)
    assert trainer.global_step == 6  # two of eight batches, each epoch
    assert module.epoch_ends == 3  # the epoch still ends
    assert "val_loss" not in trainer.callback_metrics  # its last batch never came: no validation
