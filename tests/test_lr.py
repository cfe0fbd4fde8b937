import keras
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _lr(module):
    return float(keras.ops.convert_to_numpy(module.optimizer.learning_rate))


def test_learning_rate_schedule_objects_work_in_the_compiled_step():
    class Decaying(BoringModule):
        def configure_optimizer(self):
            return keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5))

    lrs = []

    class Read(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            lrs.append(trainer.callback_metrics["lr"])

    trainer = quiet_trainer(max_epochs=3, callbacks=[kt.callbacks.LearningRateMonitor(), Read()])
    trainer.fit(Decaying(), train_data=regression_data(8), batch_size=4)
    assert lrs == pytest.approx([0.1, 0.05, 0.025])


def test_callable_scheduler_per_epoch():
    class Halving(BoringModule):
        def configure_optimizer(self):
            return {"optimizer": keras.optimizers.SGD(0.1),
                    "lr_scheduler": {"scheduler": lambda epoch, lr: lr * 0.5, "interval": "epoch"}}

    module = Halving()
    quiet_trainer(max_epochs=3).fit(module, train_data=regression_data(8))
    assert _lr(module) == pytest.approx(0.1 * 0.5**3)


def test_callable_scheduler_per_step_with_frequency():
    class Stepping(BoringModule):
        def configure_optimizer(self):
            return {"optimizer": keras.optimizers.SGD(1.0),
                    "lr_scheduler": {"scheduler": lambda step, lr: 1.0 / step, "interval": "step",
                                     "frequency": 2}}

    module = Stepping()
    quiet_trainer(max_epochs=1).fit(module, train_data=regression_data(20), batch_size=4)
    assert _lr(module) == pytest.approx(1.0 / 4)  # set at steps 2 and 4 of 5


class Plateau(BoringModule):
    def __init__(self, values):
        super().__init__()
        self.values = values

    def configure_optimizer(self):
        return {"optimizer": keras.optimizers.SGD(0.1),
                "lr_scheduler": {"scheduler": kt.lr.ReduceLROnPlateau(factor=0.5, patience=2),
                                 "monitor": "score"}}

    def on_train_epoch_end(self):
        self.log("score", self.values[self.trainer.current_epoch])


@pytest.mark.parametrize(("values", "expected"), [
    ([3, 2, 1, 0.5], 0.1),                      # always improving
    ([3, 3, 3, 3], 0.05),                       # reduced at epoch 2: 2 checks without improvement
    ([3, 3, 3, 3, 3, 3, 3], 0.0125),            # and again at epochs 4 and 6 (Keras's rule)
])
def test_reduce_on_plateau(values, expected):
    module = Plateau(values)
    quiet_trainer(max_epochs=len(values)).fit(module, train_data=regression_data(8))
    assert _lr(module) == pytest.approx(expected)


@pytest.mark.parametrize(("config", "error", "match"), [
    ({"scheduler": "cosine"}, TypeError, "must be a kt.lr.ReduceLROnPlateau or a callable"),
    ({"scheduler": lambda e, lr: lr, "interval": "batch"}, ValueError, "Received: interval='batch'"),
    ({"scheduler": lambda e, lr: lr, "frequency": 0}, ValueError, "Received: frequency=0"),
    ({"schedule": lambda e, lr: lr}, ValueError, "Received keys"),
])
def test_bad_scheduler_configs(config, error, match):
    class Bad(BoringModule):
        def configure_optimizer(self):
            return {"optimizer": keras.optimizers.SGD(0.1), "lr_scheduler": config}

    with pytest.raises(error, match=match):
        quiet_trainer(max_epochs=1).fit(Bad(), train_data=regression_data(8))


def test_lr_monitor_per_step_and_bad_interval():
    trainer = quiet_trainer(max_epochs=1, log_every_n_steps=2,
                            callbacks=[kt.callbacks.LearningRateMonitor(logging_interval="step")])
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=4)
    assert trainer.callback_metrics["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="Received: logging_interval='batch'"):
        kt.callbacks.LearningRateMonitor(logging_interval="batch")


def test_gradient_accumulation_scheduler():
    trainer = quiet_trainer(max_epochs=3, callbacks=[
        kt.callbacks.GradientAccumulationScheduler({0: 1, 1: 2, 2: 4})])
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=4)
    assert trainer.global_step == 4 + 2 + 1
    with pytest.raises(ValueError, match="Received: scheduling={0: 0}"):
        kt.callbacks.GradientAccumulationScheduler({0: 0})


@pytest.mark.parametrize("steps_per_execution", [1, "auto"])
def test_step_scheduler_under_accumulation_acts_only_after_optimizer_steps(steps_per_execution):
    """4 batches, 2 per optimizer step: the scheduler acts at steps 1 and 2, never between them."""
    seen = []

    def halving(step, lr):
        seen.append(step)
        return lr * 0.5

    class Halving(BoringModule):
        def configure_optimizer(self):
            return {"optimizer": keras.optimizers.SGD(0.1),
                    "lr_scheduler": {"scheduler": halving, "interval": "step"}}

    module = Halving()
    trainer = quiet_trainer(max_epochs=1, accumulate_grad_batches=2,
                            steps_per_execution=steps_per_execution)
    trainer.fit(module, train_data=regression_data(16), batch_size=4)
    assert trainer.global_step == 2
    assert seen == [1, 2]
    assert _lr(module) == pytest.approx(0.025)
