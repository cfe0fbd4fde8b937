import keras
import pytest

import kerastrainer as kt
from kerastrainer.callbacks.base import HOOK_NAMES
from tests.helpers import BoringModule, quiet_trainer, regression_data

SKIPPED = {"on_after_backward", "on_before_optimizer_step", "on_save_checkpoint", "on_load_checkpoint", "on_exception"}


class Recorder(kt.Callback):
    def __init__(self, log):
        self.log = log


def _recording(name):
    def hook(self, trainer, module, *args):
        label = name
        if name == "setup" or name == "teardown":
            label = f"{name}:{args[0]}"
        elif trainer.sanity_checking and "validation" in name:
            label = f"sanity:{name}"
        self.log.append(label)
    return hook


for _name in HOOK_NAMES:
    if _name not in SKIPPED:
        setattr(Recorder, _name, _recording(_name))


def _run(entry):
    log = []
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=1, callbacks=[Recorder(log)])
    x, y = regression_data(rows=8)
    module = BoringModule()
    if entry == "fit":
        trainer.fit(module, train_data=(x, y), val_data=(x[:4], y[:4]), batch_size=4)
    elif entry == "validate":
        trainer.validate(module, data=(x, y), batch_size=4)
    elif entry == "test":
        trainer.test(module, data=(x, y), batch_size=4)
    else:
        trainer.predict(module, data=x, batch_size=4)
    return log


def _epoch():
    batches = ["on_train_batch_start", "on_train_batch_end"] * 2
    validation = ["on_validation_start", "on_validation_epoch_start", "on_validation_batch_start",
                  "on_validation_batch_end", "on_validation_epoch_end", "on_validation_end"]
    return ["on_train_epoch_start", *batches, *validation, "on_train_epoch_end"]


def _evaluation(kind, batches=2):
    return [f"on_{kind}_start", f"on_{kind}_epoch_start",
            *[f"on_{kind}_batch_{edge}" for _ in range(batches) for edge in ("start", "end")],
            f"on_{kind}_epoch_end", f"on_{kind}_end"]


EXPECTED = {
    "fit": ["setup:fit", "on_fit_start", "on_sanity_check_start",
            *[f"sanity:{h}" for h in _evaluation("validation", batches=1)], "on_sanity_check_end",
            "on_train_start", *_epoch(), *_epoch(), "on_train_end", "on_fit_end", "teardown:fit"],
    "validate": ["setup:validate", *_evaluation("validation"), "teardown:validate"],
    "test": ["setup:test", *_evaluation("test"), "teardown:test"],
    "predict": ["setup:predict", *_evaluation("predict"), "teardown:predict"],
}


@pytest.mark.parametrize("entry", ["fit", "validate", "test", "predict"])
def test_hook_order_is_exactly_the_contract(entry):
    assert _run(entry) == EXPECTED[entry]


def test_monitors_run_after_plain_callbacks_and_the_module():
    order = []

    class Plain(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            order.append("plain")

    class Monitor(kt.Callback):
        is_monitor = True

        def on_train_epoch_end(self, trainer, module):
            order.append(("monitor", "val_loss" in trainer.callback_metrics))

    class Module(BoringModule):
        def on_train_epoch_end(self):
            order.append("module")

    trainer = quiet_trainer(max_epochs=1, callbacks=[Monitor(), Plain()])
    trainer.fit(Module(), train_data=regression_data(8), val_data=regression_data(4))
    assert order == ["plain", "module", ("monitor", True)]


def test_a_hook_set_on_the_instance_or_inherited_from_a_subclass_is_called():
    calls = []

    class Parent(kt.Callback):
        def on_train_start(self, trainer, module):
            calls.append(type(self).__name__)

    class Child(Parent):
        pass

    assigned = kt.Callback()
    assigned.on_train_end = lambda trainer, module: calls.append("assigned")
    trainer = quiet_trainer(max_epochs=1, callbacks=[Child(), assigned])
    trainer.fit(BoringModule(), train_data=regression_data(8))
    assert calls == ["Child", "assigned"]


def test_hook_exception_names_callback_and_hook_and_fires_on_exception_first():
    events = []

    class Broken(kt.Callback):
        def on_train_epoch_start(self, trainer, module):
            raise KeyError("boom")

    class Watcher(kt.Callback):
        def on_exception(self, trainer, module, exception):
            events.append(("on_exception", type(exception).__name__))

        def teardown(self, trainer, module, stage):
            events.append(("teardown", stage))

    trainer = quiet_trainer(max_epochs=1, callbacks=[Broken(), Watcher()])
    with pytest.raises(KeyError, match=r"Broken.on_train_epoch_start raised: boom"):
        trainer.fit(BoringModule(), train_data=regression_data(8))
    assert events == [("on_exception", "KeyError"), ("teardown", "fit")]


def test_module_hook_exception_names_the_module():
    class Bad(BoringModule):
        def on_fit_start(self):
            raise ValueError("bad setup")

    with pytest.raises(ValueError, match=r"Bad.on_fit_start raised: bad setup"):
        quiet_trainer(max_epochs=1).fit(Bad(), train_data=regression_data(8))


def test_callback_state_dict_defaults():
    callback = kt.Callback()
    assert callback.state_dict() == {} and callback.state_key == "Callback"
    callback.load_state_dict({})


class BringsCallbacks(BoringModule):
    """Lightning's configure_callbacks: its EarlyStopping replaces the Trainer's."""

    def __init__(self):
        super().__init__()
        self.keras_epochs = []

    def configure_callbacks(self):
        return [kt.callbacks.EarlyStopping(monitor="val_loss", patience=7),
                keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.keras_epochs.append(epoch))]


def test_a_module_brings_its_callbacks_and_they_never_pile_up():
    module = BringsCallbacks()
    trainer = quiet_trainer(max_epochs=2, callbacks=[kt.callbacks.EarlyStopping(monitor="loss")])
    trainer.fit(module, train_data=regression_data(16), val_data=regression_data(8), batch_size=4)
    assert [c.monitor for c in trainer.early_stopping_callbacks] == ["val_loss"]
    assert module.keras_epochs == [0, 1]
    trainer.validate(module, regression_data(8))
    trainer.fit(module, train_data=regression_data(16), val_data=regression_data(8), batch_size=4)
    names = [type(c).__name__ for c in trainer.callbacks]
    assert names.count("EarlyStopping") == 1 and names.count("KerasCallbackAdapter") == 1
    assert module.keras_epochs == [0, 1, 0, 1]


class BringsNonsense(BoringModule):
    def configure_callbacks(self):
        return 3


def test_configure_callbacks_must_return_callbacks():
    with pytest.raises(TypeError, match=r"BringsNonsense.configure_callbacks\(\): `callbacks` must be a callback"):
        quiet_trainer(max_epochs=1).fit(BringsNonsense(), train_data=regression_data(8), batch_size=4)
