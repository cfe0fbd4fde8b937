import keras
import numpy as np
import pytest

import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _fit(tmp_path, epochs=3, ckpt_path=None, **flags):
    keras.backend.clear_session()
    kt.seed_everything(2)
    ema = kt.callbacks.EMA(decay=0.8)
    saver = kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", filename="{epoch}", save_top_k=-1)
    module = BoringModule(lr=0.2)
    trainer = quiet_trainer(max_epochs=epochs, callbacks=[ema, saver], deterministic=True, **flags)
    trainer.fit(module, train_data=regression_data(32), val_data=regression_data(8), batch_size=8,
                ckpt_path=ckpt_path)
    return trainer, module, ema


def test_averaged_weights_are_the_ones_evaluated(tmp_path):
    trainer, module, ema = _fit(tmp_path)
    x, _ = regression_data(8)
    raw = [w.copy() for w in module.get_weights()]
    through_trainer = trainer.predict(data=x)
    assert not np.allclose(through_trainer, module.predict(x, verbose=0))
    for variable, value in zip(module.trainable_variables, ema.averaged_weights()):
        variable.assign(value)
    np.testing.assert_allclose(through_trainer, module.predict(x, verbose=0), atol=1e-6)
    module.set_weights(raw)
    trainer.predict(data=x)
    for a, b in zip(raw, module.get_weights()):  # swapped back after evaluation
        np.testing.assert_array_equal(a, b)


def test_checkpoint_holds_averages_and_resume_continues_raw_weights(tmp_path):
    trainer, module, ema = _fit(tmp_path)
    x, _ = regression_data(8)
    loaded = BoringModule.load_from_checkpoint(tmp_path / "ck" / "epoch=2.ckpt")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trainer.predict(data=x), atol=1e-6)
    full = [w.copy() for w in module.get_weights()]
    _, resumed, _ = _fit(tmp_path / "again", ckpt_path=str(tmp_path / "ck" / "epoch=1.ckpt"))
    for a, b in zip(full, resumed.get_weights()):
        assert np.array_equal(a, b)


def test_bad_decay():
    with pytest.raises(ValueError, match="Received: decay=1.0"):
        kt.callbacks.EMA(decay=1.0)
