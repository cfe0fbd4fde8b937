import json
import glob
import os

import pytest

import kerastrainer as kt
from kerastrainer.profiler import PassThroughProfiler, SimpleProfiler
from tests.helpers import BoringModule, regression_data


def _fit(tmp_path, profiler, **flags):
    flags.setdefault("steps_per_execution", 1)  # one compiled call per batch: counts below
    trainer = kt.Trainer(max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, profiler=profiler, **flags)
    trainer.fit(BoringModule(), train_data=regression_data(16), val_data=regression_data(8), batch_size=4)
    return trainer


def test_simple_profiler_table_keys_and_files(tmp_path):
    trainer = _fit(tmp_path, "simple", callbacks=[kt.callbacks.EarlyStopping(patience=9)])
    summary = trainer.profiler.summary()
    assert summary["train: compiled call"]["calls"] == 8
    assert summary["validation run"]["calls"] == 2
    assert summary["checkpoint save"]["calls"] == 2
    assert "[hook] EarlyStopping.on_train_epoch_end" in summary
    assert "logger write" in summary and "fit" in summary
    with open(os.path.join(trainer.log_dir, "profile.json")) as handle:
        assert json.load(handle).keys() == summary.keys()
    assert "Profiler report" in open(os.path.join(trainer.log_dir, "profile.txt")).read()


def test_disabled_profiler_records_nothing(tmp_path):
    trainer = _fit(tmp_path, None)
    assert type(trainer.profiler) is PassThroughProfiler
    assert not os.path.exists(os.path.join(trainer.log_dir, "profile.json"))


def test_tf_profiler_writes_a_trace(tmp_path):
    trainer = _fit(tmp_path, "tf")
    assert glob.glob(os.path.join(trainer.log_dir, "tf_profile", "**", "*.xplane.pb"), recursive=True)
    assert isinstance(trainer.profiler, SimpleProfiler)


def test_bad_profiler():
    with pytest.raises(ValueError, match="Received: profiler='fast'"):
        kt.Trainer(profiler="fast")
