import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, ScriptedScore as Scripted, quiet_trainer, regression_data


@pytest.mark.parametrize(
    ("mode", "values", "patience", "min_delta", "stopped_after"),
    [
        ("min", [5, 4, 3, 3, 3, 3, 3, 3], 2, 0.0, 5),
        ("min", [5, 4, 3.9, 3.85, 3.8, 3, 3, 3], 2, 0.5, 4),
        ("max", [1, 2, 3, 2, 1, 0, 0, 0], 3, 0.0, 6),
        ("max", [1, 2, 3, 4, 5, 6, 7, 8], 1, 0.0, 8),
    ],
)
def test_patience_and_min_delta(mode, values, patience, min_delta, stopped_after):
    stopper = kt.callbacks.EarlyStopping(monitor="score", mode=mode, patience=patience,
                                         min_delta=min_delta)
    trainer = quiet_trainer(max_epochs=len(values), callbacks=[stopper])
    trainer.fit(Scripted(values), train_data=regression_data(8))
    assert trainer.current_epoch + 1 == stopped_after


@pytest.mark.parametrize(
    ("kwargs", "values", "stopped_after", "reason"),
    [
        ({"stopping_threshold": 2.0}, [5, 3, 2, 1, 1], 3, "stopping threshold"),
        ({"divergence_threshold": 10.0}, [5, 6, 11, 1, 1], 3, "divergence threshold"),
        ({}, [5, float("nan"), 1, 1, 1], 2, "not finite"),
    ],
)
def test_thresholds_and_finite_check(kwargs, values, stopped_after, reason):
    stopper = kt.callbacks.EarlyStopping(monitor="score", patience=10, **kwargs)
    trainer = quiet_trainer(max_epochs=len(values), callbacks=[stopper])
    trainer.fit(Scripted(values), train_data=regression_data(8))
    assert trainer.current_epoch + 1 == stopped_after
    assert reason in stopper.stopping_reason


def test_missing_monitor_names_the_existing_keys():
    stopper = kt.callbacks.EarlyStopping(monitor="val_los")
    trainer = quiet_trainer(max_epochs=2, callbacks=[stopper])
    with pytest.raises(ValueError, match=r"EarlyStopping.on_train_epoch_end raised: EarlyStopping"
                                         r"\(monitor='val_los'\) could not find 'val_los'.*"
                                         r"Available: loss, val_loss"):
        trainer.fit(BoringModule(), train_data=regression_data(8), val_data=regression_data(4))


def test_val_monitor_waits_for_epochs_with_validation():
    stopper = kt.callbacks.EarlyStopping(monitor="val_loss", patience=100)
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=2, callbacks=[stopper])
    trainer.fit(BoringModule(), train_data=regression_data(8), val_data=regression_data(4))
    assert trainer.current_epoch == 2


def test_restore_best_weights_and_state_dict():
    best = {}

    class Snapshot(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 1:
                best["weights"] = [w.copy() for w in module.get_weights()]

    stopper = kt.callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    trainer = quiet_trainer(max_epochs=6, callbacks=[Snapshot(), stopper])
    module = Scripted([3, 1, 2, 2, 2, 2])
    trainer.fit(module, train_data=regression_data(8))
    for a, b in zip(best["weights"], module.get_weights()):
        np.testing.assert_array_equal(a, b)
    state = stopper.state_dict()
    assert state == {"wait_count": 2, "stopped_epoch": 3, "best_score": 1.0, "patience": 2, "best_epoch": 1}
    assert stopper.best_epoch == 1
    other = kt.callbacks.EarlyStopping(monitor="score")
    other.load_state_dict(state)
    assert other.state_dict() == state


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "up"}, r"Received: mode='up'"),
                                               ({"patience": -1}, r"Received: patience=-1"),
                                               ({"min_delta": -0.1}, r"Received: min_delta=-0.1")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.callbacks.EarlyStopping(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_delta": "0.1"}, r"^EarlyStopping: `min_delta` must be a number.*write min_delta=0.1"),
    ({"stopping_threshold": "1"}, r"^EarlyStopping: `stopping_threshold` must be a number"),
    ({"divergence_threshold": [1]}, r"^EarlyStopping: `divergence_threshold` must be a number"),
    ({"monitor": 3}, r"^EarlyStopping: `monitor` must be .*Received: monitor=3"),
])
def test_arguments_of_another_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        kt.callbacks.EarlyStopping(**kwargs)


def test_monitors_act_only_on_fresh_validation_values():
    """Validation every 2nd epoch of a model that does not learn: patience counts validation runs,
    and the epochs between them have no `val_loss` (None in the history), as under Keras."""
    stopper = kt.callbacks.EarlyStopping(monitor="val_loss", patience=2)
    trainer = quiet_trainer(max_epochs=8, check_val_every_n_epoch=2, callbacks=[stopper],
                            num_sanity_val_steps=0)
    trainer.fit(BoringModule(lr=0.0), train_data=regression_data(8), val_data=regression_data(8))
    assert stopper.stopped_epoch == 5 and trainer.current_epoch == 5
    losses = trainer.history["val_loss"]
    assert losses[0::2] == [None, None, None] and None not in losses[1::2]


@pytest.mark.parametrize(
    ("kwargs", "values", "stopped_after"),
    [
        ({"baseline": 2.0}, [5, 4, 3, 1, 1], 2),  # never better than the baseline: patience runs out
        ({}, [1, 2, 3, 4, 5, 6], 3),
        ({"start_from_epoch": 2}, [1, 2, 3, 4, 5, 6], 5),  # epochs 0-1 ignored: best 3, then worse
    ],
)
def test_keras_baseline_and_start_from_epoch(kwargs, values, stopped_after):
    stopper = kt.callbacks.EarlyStopping(monitor="score", patience=2, **kwargs)
    trainer = quiet_trainer(max_epochs=len(values), callbacks=[stopper])
    trainer.fit(Scripted(values), train_data=regression_data(8))
    assert trainer.current_epoch + 1 == stopped_after


def test_strict_false_warns_once_and_stops_nothing():
    stopper = kt.callbacks.EarlyStopping(monitor="nope", patience=0, strict=False)
    trainer = quiet_trainer(max_epochs=3, callbacks=[stopper])
    with pytest.warns(UserWarning, match=r"could not find 'nope'.*strict=False: early stopping is off") as caught:
        trainer.fit(BoringModule(), train_data=regression_data(8))
    assert trainer.current_epoch == 2 and not trainer.should_stop
    assert len([w for w in caught if "nope" in str(w.message)]) == 1


@pytest.mark.parametrize(("on_train_epoch_end", "checks"), [(True, 2), (False, 4)])
def test_check_on_train_epoch_end_false_checks_after_every_validation(on_train_epoch_end, checks):
    class Counting(kt.callbacks.EarlyStopping):
        seen = 0

        def _check(self, trainer, module):
            type(self).seen += not trainer.sanity_checking
            super()._check(trainer, module)

    stopper = Counting(monitor="val_loss", patience=10, check_on_train_epoch_end=on_train_epoch_end)
    trainer = quiet_trainer(max_epochs=2, val_check_interval=0.5, callbacks=[stopper])
    x, y = regression_data(16)
    trainer.fit(BoringModule(), train_data=(x, y), val_data=(x, y), batch_size=4)
    assert Counting.seen == checks


def test_a_bad_start_from_epoch_is_named():
    with pytest.raises(ValueError, match=r"`start_from_epoch` must be an int >= 0.*Received: start_from_epoch=-1"):
        kt.callbacks.EarlyStopping(start_from_epoch=-1)
