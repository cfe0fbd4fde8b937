"""LoopPosition: the loop position a checkpoint saves, and its agreement with the optimizer."""

import pytest

import kerastrainer as kt
from kerastrainer.loop_position import LoopPosition
from tests.helpers import BoringModule, quiet_trainer, regression_data


def test_history_holds_none_for_values_an_epoch_did_not_log():
    position = LoopPosition()
    position.record_epoch({"loss": 1.0})
    position.epoch = 1
    position.record_epoch({"loss": 0.5, "val_loss": 0.7})
    assert position.history == {"loss": [1.0, 0.5], "val_loss": [None, 0.7], "epoch": [0, 1]}


class StepsBehindTheLoop(kt.Callback):
    """Applies an optimizer step the loop does not know about."""

    def on_train_epoch_end(self, trainer, module):
        module.optimizer.iterations.assign_add(1)


def test_global_step_is_checked_against_the_optimizers_counter():
    x, y = regression_data(16)
    trainer = quiet_trainer(max_epochs=2, callbacks=[StepsBehindTheLoop()])
    with pytest.raises(RuntimeError, match=r"global_step is 4, but the optimizer's iterations "
                                           r"counter says 5 steps"):
        trainer.fit(BoringModule(), train_data=(x, y), batch_size=4)


def test_a_reused_optimizer_that_already_counted_steps_is_fine():
    class Reused(BoringModule):
        def configure_optimizer(self):
            if not hasattr(self, "kept"):
                object.__setattr__(self, "kept", super().configure_optimizer())
            return self.kept

    module, data = Reused(), regression_data(16)
    quiet_trainer(max_epochs=1).fit(module, train_data=data, batch_size=4)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(module, train_data=data, batch_size=4)  # the counter starts at 4 here
    assert trainer.global_step == 4 and int(module.optimizer.iterations.numpy()) == 8
