"""Tuner.lr_find and the LearningRateFinder callback: a real sweep, the module put back."""

import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.1).astype("float32")
    return x, y


def _trainer(**flags):
    return kt.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **flags)


def _built(seed=0):
    keras.utils.set_random_seed(seed)
    module = BoringModule(units=8)
    module(np.zeros((1, 3), "float32"))
    return module


def test_a_sweep_suggests_a_sane_rate_and_puts_the_module_back(tmp_path):
    x, y = _data()
    module = _built()
    before = [v.numpy() for v in module.variables]
    rng_before = np.random.get_state()[1].copy()
    trainer = _trainer()
    finder = kt.tuner.Tuner(trainer).lr_find(module, (x, y), batch_size=16, min_lr=1e-5,
                                             max_lr=10.0, num_training=60)
    lrs, losses = finder.results["lr"], finder.results["loss"]
    assert lrs[0] == pytest.approx(1e-5) and len(lrs) == len(losses)
    assert len(losses) < 60  # SGD at rates near 10 diverges: the sweep stopped early
    suggestion = finder.suggestion()
    assert 1e-4 < suggestion < 1.0
    assert module.hparams.lr == suggestion  # update_attr: configure_optimizer reads it
    for old, new in zip(before, module.variables):
        np.testing.assert_array_equal(old, new.numpy())
    np.testing.assert_array_equal(rng_before, np.random.get_state()[1])
    assert module.trainer is None and module.optimizer is None
    png = tmp_path / "lr.png"
    finder.plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_after_a_sweep_matches_a_fit_without_one():
    x, y = _data()
    tuned, plain = _built(), _built()
    kt.tuner.Tuner(_trainer()).lr_find(tuned, (x, y), num_training=20, update_attr=False)
    for module in (tuned, plain):
        keras.utils.set_random_seed(1)
        trainer = _trainer(max_epochs=1)
        trainer.fit(module, (x, y), batch_size=32)
        assert trainer.global_step == 8  # from step 0
    for a, b in zip(tuned.variables, plain.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("mode", ["exponential", "linear"])
def test_rates_span_the_range(mode):
    x, y = _data(64)
    finder = kt.tuner.Tuner(_trainer()).lr_find(
        _built(), (x, y), min_lr=1e-4, max_lr=1e-2, num_training=5, mode=mode,
        early_stop_threshold=None, update_attr=False)
    expected = (np.geomspace if mode == "exponential" else np.linspace)(1e-4, 1e-2, 5)
    np.testing.assert_allclose(finder.results["lr"], expected, rtol=1e-6)
    with pytest.warns(UserWarning, match="too few points for a suggestion"):
        assert finder.suggestion() is None  # 5 steps, the first 10 skipped


def test_an_unbuilt_module_keeps_the_weights_it_was_built_with():
    x, y = _data(64)
    keras.utils.set_random_seed(3)
    module = BoringModule()  # built by the sweep, which then diverges (lr up to 1000)
    kt.tuner.Tuner(_trainer()).lr_find(module, (x, y), num_training=10, max_lr=1e3,
                                       early_stop_threshold=None, update_attr=False)
    keras.utils.set_random_seed(3)
    reference = BoringModule()
    reference(np.zeros((1, 3), "float32"))  # the same initial draws
    assert len(module.variables) == 4
    for a, b in zip(module.variables, reference.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_callback_trains_at_the_suggested_rate():
    x, y = _data()
    finder = kt.callbacks.LearningRateFinder(min_lr=1e-5, max_lr=10.0, num_training_steps=40)
    module = _built()
    trainer = _trainer(max_epochs=1, callbacks=[finder])
    trainer.fit(module, (x, y), batch_size=16)
    suggestion = finder.optimal_lr.suggestion()
    assert module.hparams.lr == suggestion
    assert float(module.optimizer.learning_rate) == pytest.approx(suggestion)
    assert trainer.global_step == 16  # the fit itself, from step 0


def test_the_suggestion_is_the_steepest_point_of_the_plotted_curve():
    finder = kt.tuner.LRFinder(mode="exponential", min_lr=1e-6, max_lr=1.0, num_training=100)
    finder.results["lr"] = [finder.lr_at(i) for i in range(100)]
    # Falls fastest at 1e-2 on the log axis; against the rate itself the flat start would win.
    finder.results["loss"] = [2.0 - np.tanh(np.log10(lr) + 2.0) for lr in finder.results["lr"]]
    assert finder.suggestion() == pytest.approx(1e-2, rel=0.2)


class ScheduledModule(BoringModule):
    def configure_optimizer(self):
        return keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9))


class NoRate(BoringModule):
    """Its rate is fixed in configure_optimizer: nothing for lr_find to write."""

    def __init__(self):
        super().__init__()
        self._kt_hparams.clear()

    def configure_optimizer(self):
        return keras.optimizers.SGD(0.05)


@pytest.mark.parametrize("module, kwargs, error, match", [
    (BoringModule, {"min_lr": 1.0, "max_lr": 0.1}, ValueError, r"min_lr < max_lr. Received: min_lr=1.0, max_lr=0.1"),
    (BoringModule, {"min_lr": 0}, ValueError, r"`min_lr` must be a positive number. Received: min_lr=0"),
    (BoringModule, {"num_training": 1}, ValueError, r"`num_training` must be an integer >= 2. Received: num_training=1"),
    (BoringModule, {"mode": "cosine"}, ValueError, r"`mode` must be one of .*Received: mode='cosine'"),
    (ScheduledModule, {"update_attr": False}, ValueError, r"learning_rate\s+cannot be set.*lr_scheduler"),
])
def test_bad_arguments_are_refused(module, kwargs, error, match):
    x, y = _data(64)
    with pytest.raises(error, match=match):
        kt.tuner.Tuner(_trainer()).lr_find(module(), (x, y), num_training=kwargs.pop("num_training", 5),
                                           **kwargs)


def test_a_module_without_a_rate_to_write_is_warned_of_and_still_swept():
    x, y = _data(64)
    module = NoRate()
    with pytest.warns(UserWarning, match=r"NoRate has no `lr` or `learning_rate`.*fit will not use it"):
        finder = kt.tuner.Tuner(_trainer()).lr_find(module, (x, y), num_training=12)
    assert len(finder.results["lr"]) == 12 and "lr" not in module.hparams


def test_the_tuner_needs_a_trainer():
    with pytest.raises(TypeError, match=r"Tuner\(trainer\) needs a kerastrainer.Trainer. Received: trainer=3"):
        kt.tuner.Tuner(3)
