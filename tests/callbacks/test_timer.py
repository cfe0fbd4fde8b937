import datetime

import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def test_every_stage_is_timed():
    timer = kt.callbacks.Timer()
    trainer = quiet_trainer(max_epochs=2, callbacks=[timer])
    x, y = regression_data(16)
    trainer.fit(BoringModule(), train_data=(x, y), val_data=(x, y), batch_size=4)
    trainer.test(data=(x, y), batch_size=4)
    trainer.predict(data=x, batch_size=4)
    elapsed = timer.state_dict()["time_elapsed"]
    assert set(elapsed) == {"train", "validate", "test", "predict"}
    assert all(seconds > 0 for seconds in elapsed.values()), elapsed
    assert timer.time_remaining() is None


@pytest.mark.parametrize(("interval", "epochs_run"), [("step", 1), ("epoch", 1)])
def test_the_duration_stops_training(interval, epochs_run):
    timer = kt.callbacks.Timer(duration=1e-6, interval=interval, verbose=False)
    trainer = quiet_trainer(max_epochs=5, callbacks=[timer], steps_per_execution=1)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=4)
    assert trainer.current_epoch + 1 == epochs_run
    # "step": after the first compiled call; "epoch": after the first epoch's 4 steps
    assert trainer.global_step == (1 if interval == "step" else 4)
    assert timer.time_remaining() == 0.0


def test_training_time_accumulates_over_a_resume(tmp_path):
    first = kt.callbacks.Timer()
    saver = kt.callbacks.ModelCheckpoint(dirpath=str(tmp_path), save_last=True)
    quiet_trainer(max_epochs=1, callbacks=[first, saver]).fit(
        BoringModule(), train_data=regression_data(16), batch_size=4)
    second = kt.callbacks.Timer()
    saver = kt.callbacks.ModelCheckpoint(dirpath=str(tmp_path), save_last=True)
    quiet_trainer(max_epochs=2, callbacks=[second, saver]).fit(
        BoringModule(), train_data=regression_data(16), batch_size=4, ckpt_path="last")
    assert second.time_elapsed("train") > first.time_elapsed("train") > 0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"interval": "batch"}, ValueError, r"^Timer: `interval` must be 'step' or 'epoch'\. Received: interval='batch'"),
    ({"duration": "8h"}, ValueError, r"^`duration` must be seconds.*Received: duration='8h'"),
    ({"duration": -1}, ValueError, r"Received: duration=-1"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        kt.callbacks.Timer(**kwargs)


@pytest.mark.parametrize("duration", [3600, datetime.timedelta(hours=1), {"hours": 1}, "00:01:00:00"])
def test_durations_in_every_form(duration):
    assert kt.callbacks.Timer(duration=duration).duration == 3600.0
