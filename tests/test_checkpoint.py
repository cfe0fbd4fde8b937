import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer.checkpoint_io import write_checkpoint
from tests.helpers import BoringModule, quiet_trainer, regression_data


def _fit(tmp_path, module=None, epochs=2, callbacks=(), ckpt_path=None, **flags):
    trainer = quiet_trainer(max_epochs=epochs, default_root_dir=str(tmp_path), callbacks=list(callbacks),
                            **flags)
    trainer.fit(module or BoringModule(), train_data=regression_data(16), val_data=regression_data(8),
                batch_size=4, ckpt_path=ckpt_path)
    return trainer


def test_checkpoint_file_is_self_describing(tmp_path):
    trainer = _fit(tmp_path, callbacks=[kt.callbacks.EarlyStopping(monitor="val_loss", patience=9)])
    path = tmp_path / "manual.ckpt"
    trainer.save_checkpoint(path)
    with h5py.File(path, "r") as f:
        assert set(f["weights"]) == {"hidden", "out"}
        assert f["weights/hidden/kernel"].shape == (3, 4)
        assert set(f["optimizer/default"]) >= {"iteration", "learning_rate"}
        assert int(f["optimizer/default/iteration"][()]) == 8
        assert f["trainer"].attrs["global_step"] == "8" and f["trainer"].attrs["epoch_done"] == "true"
        assert "numpy" in f["rng"] and "train" in f["logs"]
        assert any(k.startswith("EarlyStopping") for k in f["callbacks"])
        assert {"kerastrainer", "keras", "tensorflow"} <= set(f["versions"].attrs)
        assert f["module/hparams"].attrs["units"] == "4"
        assert f["module/input_spec"].attrs["shape"] == "[null, 3]"
        assert len(f.attrs["checksum"]) > 60
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_weights_only_checkpoint_cannot_resume(tmp_path):
    trainer = _fit(tmp_path)
    trainer.save_checkpoint(tmp_path / "w.ckpt", weights_only=True)
    with h5py.File(tmp_path / "w.ckpt", "r") as f:
        assert "optimizer" not in f
    with pytest.raises(ValueError, match=r"holds weights only.*cannot resume"):
        _fit(tmp_path / "again", ckpt_path=str(tmp_path / "w.ckpt"))


def test_load_from_checkpoint_rebuilds_without_trainer_or_data(tmp_path):
    module = BoringModule(units=6)
    trainer = _fit(tmp_path, module=module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = BoringModule.load_from_checkpoint(tmp_path / "m.ckpt")
    x, _ = regression_data(5)
    assert loaded.hparams.units == 6
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), module.predict(x, verbose=0))
    changed = BoringModule.load_from_checkpoint(tmp_path / "m.ckpt", lr=0.5)
    assert changed.hparams.lr == 0.5


class Renamed(BoringModule):
    """BoringModule whose `lr` argument was renamed `learning_rate` after a checkpoint was saved."""

    def __init__(self, units=4, learning_rate=0.05):
        super().__init__(units=units, lr=learning_rate)


class FixedWidth(BoringModule):
    """A child that passes its parent's saved argument itself: nothing of the checkpoint is lost."""

    def __init__(self, lr=0.05):
        super().__init__(units=6, lr=lr)


class Scaled(BoringModule):
    """A hyperparameter that is an array, or any object."""

    def __init__(self, scale=None, units=4, lr=0.05):
        super().__init__(units=units, lr=lr)
        self.save_hyperparameters()
        self.scale = scale


def test_an_array_hyperparameter_is_saved_as_a_list_and_an_object_is_refused_on_reload(tmp_path):
    _fit(tmp_path, module=Scaled(scale=np.array([1.0, 2.0]))).save_checkpoint(tmp_path / "a.ckpt")
    assert Scaled.load_from_checkpoint(tmp_path / "a.ckpt").hparams.scale == [1.0, 2.0]
    with pytest.warns(UserWarning, match=r"is not JSON-serialisable"):
        _fit(tmp_path, module=Scaled(scale=object())).save_checkpoint(tmp_path / "o.ckpt")
    with pytest.raises(TypeError, match=r"^Scaled.load_from_checkpoint\(.*\): the hyperparameter `scale` "
                                        r"was saved as its repr '<object object at .*>', not as a value"):
        Scaled.load_from_checkpoint(tmp_path / "o.ckpt")
    assert Scaled.load_from_checkpoint(tmp_path / "o.ckpt", scale=3).hparams.scale == 3


def test_a_renamed_init_argument_is_named_when_its_saved_value_is_dropped(tmp_path):
    _fit(tmp_path, module=BoringModule(units=6, lr=0.2)).save_checkpoint(tmp_path / "m.ckpt")
    with pytest.warns(UserWarning, match=r"^Renamed.load_from_checkpoint\(.*\): the saved hyperparameters "
                                         r"lr=0.2 are not arguments of Renamed.__init__ any more"):
        loaded = Renamed.load_from_checkpoint(tmp_path / "m.ckpt", units=6)
    assert loaded.hparams.lr == 0.05  # the new default: what the warning is about


def test_a_value_the_child_passes_to_its_parent_is_not_lost(tmp_path, recwarn):
    _fit(tmp_path, module=FixedWidth(lr=0.2)).save_checkpoint(tmp_path / "m.ckpt")
    loaded = FixedWidth.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.units == 6 and loaded.hparams.lr == 0.2
    assert not [w for w in recwarn if "not arguments" in str(w.message)]



@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_file_is_named_in_the_error(tmp_path, damage):
    trainer = _fit(tmp_path)
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not hdf5" + data[8:])
    with pytest.raises(ValueError, match=rf"Checkpoint '{path}' cannot be read"):
        BoringModule.load_from_checkpoint(path)


def test_altered_content_fails_the_checksum(tmp_path):
    trainer = _fit(tmp_path)
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)
    with h5py.File(path, "r+") as f:
        f["weights/out/bias"][...] = 42.0
    with pytest.raises(ValueError, match=rf"Checkpoint '{path}' is corrupted.*checksum"):
        _fit(tmp_path / "b", ckpt_path=str(path))


def test_a_ckpt_path_of_another_type_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"^`ckpt_path` must be a checkpoint file.*Received: ckpt_path=123"):
        _fit(tmp_path, ckpt_path=123)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No checkpoint file at '.*nope.ckpt'"):
        _fit(tmp_path, ckpt_path=str(tmp_path / "nope.ckpt"))


def test_variables_that_differ_are_listed(tmp_path):
    trainer = _fit(tmp_path, module=BoringModule(units=4))
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)

    class Deeper(BoringModule):
        def __init__(self, units=4, lr=0.05):
            super().__init__(units=units, lr=lr)
            self.extra = keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.extra(super().call(x))

    with pytest.raises(ValueError, match=r"missing in the checkpoint: \['extra/bias', 'extra/kernel'\]"):
        Deeper.load_from_checkpoint(path)
    with pytest.raises(ValueError, match=r"shape mismatch: \['hidden/bias: checkpoint \(4,\) vs module "
                                         r"\(5,\)'"):
        BoringModule.load_from_checkpoint(path, units=5)


def test_last_with_nothing_saved_warns_and_starts_fresh(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.ckpt.tmp-crashed").write_bytes(b"half written")
    with pytest.warns(UserWarning, match='ckpt_path="last" found no last checkpoint'):
        trainer = _fit(tmp_path, ckpt_path="last")
    assert trainer.global_step == 8


@pytest.mark.parametrize("entry", ["validate", "test", "predict"])
def test_evaluating_from_a_checkpoint_that_is_not_there_is_refused(tmp_path, entry):
    trainer = quiet_trainer(default_root_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'ckpt_path="last" found no last checkpoint.*no trained '
                                                r"weights to evaluate.*save_last=True"):
        getattr(trainer, entry)(BoringModule(), regression_data(8), ckpt_path="last")


def test_best_in_a_new_process_is_the_one_the_newest_checkpoint_names(tmp_path):
    checkpoint = kt.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=2, filename="{epoch}")
    first = _fit(tmp_path, epochs=3, callbacks=[checkpoint])
    fresh = quiet_trainer(default_root_dir=str(tmp_path))  # knows nothing of the fit
    module = BoringModule()
    fresh.validate(module, regression_data(8), ckpt_path="best")
    assert fresh.callback_metrics["val_loss"] == pytest.approx(checkpoint.best_model_score, rel=1e-6)
    assert first.checkpoint_callback.best_model_path.endswith(".ckpt")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    trainer = _fit(tmp_path)
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    class Unsaveable(kt.Callback):
        def state_dict(self):
            return {"handle": object()}

    trainer.callbacks.append(Unsaveable())
    with pytest.raises(TypeError, match="neither a NumPy array nor JSON-serialisable"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.ckpt"]


_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_DFL if sys.argv[2] == "kill" else signal.SIG_IGN)
import numpy as np
from kerastrainer.checkpoint_io import write_checkpoint
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # the disk is full past 64 KiB
try:
    write_checkpoint(sys.argv[1], {"weights": np.zeros(100_000, "float32")})
except OSError as error:
    print(error)
"""


def _write_past_the_limit(path, how):
    return subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, str(path), how],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])


def test_a_full_disk_names_the_file_and_keeps_the_earlier_one(tmp_path):
    trainer = _fit(tmp_path)
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    result = _write_past_the_limit(path, "error")  # the OS refuses the write (EFBIG, as ENOSPC)
    assert result.returncode == 0, result.stderr
    assert f"Could not write the checkpoint {str(path)!r}: " in result.stdout
    assert "the earlier files in" in result.stdout and "are intact" in result.stdout
    assert "Free some space" in result.stdout
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["c.ckpt"]


@pytest.mark.parametrize("megabytes", [0.5, 16])  # more than is left, and more than the whole disk
def test_a_tiny_disk_says_no_space_left_whatever_the_library_reports(small_disk, megabytes):
    path = small_disk / "c.ckpt"
    with pytest.raises(OSError, match=rf"^\[Errno 28\] Could not write the checkpoint {re.escape(repr(str(path)))}: "
                                      r"No space left on device.*the earlier files .* are intact.*Free some space"):
        with open(small_disk / "filler", "wb") as filler:  # the disk all but full: 300 KiB left
            filler.write(b"x" * (shutil.disk_usage(small_disk).free - 300 * 2**10))
        write_checkpoint(str(path), {"weights": np.zeros(int(megabytes * 2**18), "float32")})
    assert sorted(os.listdir(small_disk)) == ["filler"]


def test_temp_files_of_killed_writers_are_removed_when_a_run_starts(tmp_path):
    folder = tmp_path / "checkpoints"
    killed = _write_past_the_limit(folder / "last.ckpt", "kill")  # the kernel kills it mid-write
    assert killed.returncode == -signal.SIGXFSZ
    [stale] = os.listdir(folder)
    assert stale.startswith(".last.ckpt.tmp-")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            in_flight = f".epoch=0.ckpt.tmp-{socket.gethostname()}-{live.pid}-abc123"
            other_host = f".epoch=1.ckpt.tmp-another-host-{live.pid + 1}-abc123"
            for name in (in_flight, other_host):
                (folder / name).write_bytes(b"being written")
            saver = kt.callbacks.ModelCheckpoint(dirpath=folder, save_top_k=0)
            _fit(tmp_path, callbacks=[saver])
        finally:
            live.kill()
    assert sorted(os.listdir(folder)) == sorted([in_flight, other_host])


@pytest.mark.parametrize(("rows", "batch_size", "expected"), [
    (8, 4, "batches per epoch: 4 in the checkpoint, 2 now"),
    (16, 8, "batches per epoch: 4 in the checkpoint, 2 now; batch size: 4 in the checkpoint, 8 now"),
])
def test_resuming_mid_epoch_on_other_data_is_refused(tmp_path, rows, batch_size, expected):
    saver = kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", filename="{step}",
                                         every_n_train_steps=2, save_top_k=-1)
    _fit(tmp_path, epochs=1, callbacks=[saver])  # 16 rows, batches of 4
    trainer = quiet_trainer(max_epochs=2)
    with pytest.raises(ValueError, match=f"saved after batch 2 of epoch 0, but .*{expected}"):
        trainer.fit(BoringModule(), train_data=regression_data(rows), batch_size=batch_size,
                    ckpt_path=str(tmp_path / "ck" / "step=2.ckpt"))


def test_resuming_at_an_epoch_end_on_other_data_warns(tmp_path):
    saver = kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", filename="{step}", save_top_k=-1)
    _fit(tmp_path, epochs=1, callbacks=[saver])
    trainer = quiet_trainer(max_epochs=2)
    with pytest.warns(UserWarning, match="batches per epoch: 4 in the checkpoint, 2 now"):
        trainer.fit(BoringModule(), train_data=regression_data(8), batch_size=4,
                    ckpt_path=str(tmp_path / "ck" / "step=4.ckpt"))
    assert trainer.global_step == 6  # the second epoch ran on the new data, 2 batches


class EpochStarts(kt.Callback):
    def __init__(self):
        self.epochs = []

    def on_train_epoch_start(self, trainer, module):
        self.epochs.append(trainer.current_epoch)


@pytest.mark.parametrize(("file", "epoch_starts"), [("step=6.ckpt", [2]), ("step=8.ckpt", [2])])
def test_resume_does_not_restart_the_resumed_epoch(tmp_path, file, epoch_starts):
    saver = kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", filename="{step}", every_n_train_steps=2,
                                         save_top_k=-1)
    _fit(tmp_path, epochs=2, callbacks=[saver])
    starts = EpochStarts()
    trainer = _fit(tmp_path / "b", epochs=3, callbacks=[starts], ckpt_path=str(tmp_path / "ck" / file))
    assert starts.epochs == epoch_starts  # step 6 is mid-epoch 1, step 8 ends epoch 1
    assert trainer.global_step == 12


def test_resumed_epoch_metrics_continue_the_running_mean(tmp_path):
    saver = kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", filename="{step}", every_n_train_steps=2,
                                         save_top_k=-1)
    full = _fit(tmp_path, epochs=2, callbacks=[saver], deterministic=True)
    resumed = _fit(tmp_path / "b", epochs=2, deterministic=True, ckpt_path=str(tmp_path / "ck" / "step=6.ckpt"))
    assert resumed.callback_metrics["loss"] == pytest.approx(full.callback_metrics["loss"], abs=1e-7)


def test_callback_state_continues_after_resume(tmp_path):
    stopper = kt.callbacks.EarlyStopping(monitor="val_loss", patience=50)
    _fit(tmp_path, epochs=2, callbacks=[stopper, kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck",
                                                                               save_last=True)])
    again = kt.callbacks.EarlyStopping(monitor="val_loss", patience=50)
    _fit(tmp_path / "b", epochs=2, callbacks=[again, kt.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck")],
         ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    assert again.best_score == stopper.best_score and again.wait_count == stopper.wait_count


def test_on_exception_checkpoint_resumes(tmp_path):
    class Fail(kt.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                raise RuntimeError("disk on fire")

    saver = kt.callbacks.OnExceptionCheckpoint(dirpath=tmp_path)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _fit(tmp_path, epochs=3, callbacks=[Fail(), saver])
    trainer = _fit(tmp_path / "b", epochs=3, ckpt_path=saver.ckpt_path)
    assert trainer.global_step == 12


def test_enable_checkpointing_adds_a_default_model_checkpoint(tmp_path):
    trainer = kt.Trainer(max_epochs=2, default_root_dir=str(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, logger=False)
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=4)
    assert os.listdir(tmp_path / "checkpoints") == ["epoch=1-step=8.ckpt"]
    assert trainer.validate(data=regression_data(8), ckpt_path="best")["val_loss"] > 0


def test_best_without_model_checkpoint(tmp_path):
    trainer = _fit(tmp_path)
    with pytest.raises(ValueError, match='ckpt_path="best" needs a ModelCheckpoint'):
        trainer.test(data=regression_data(8), ckpt_path="best")


def test_test_and_predict_load_checkpoint_weights(tmp_path):
    trainer = _fit(tmp_path)
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    x, y = regression_data(8)
    expected = trainer.predict(data=x)
    trainer.fit(trainer.module, train_data=regression_data(16))  # weights move on
    assert not np.allclose(trainer.predict(data=x), expected)
    np.testing.assert_allclose(trainer.predict(data=x, ckpt_path=str(tmp_path / "after.ckpt")), expected)


def test_export_saved_model_serves_the_same_predictions(tmp_path):
    trainer = _fit(tmp_path)
    module = trainer.module
    path = kt.export_saved_model(module, tmp_path / "served")
    x, _ = regression_data(5)
    loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(x))
    np.testing.assert_allclose(served.numpy(), module.predict(x, verbose=0), atol=1e-6)


def test_export_needs_an_input_spec(tmp_path):
    with pytest.raises(ValueError, match="has no recorded input spec"):
        kt.export_saved_model(BoringModule(), tmp_path / "x")


@keras.saving.register_keras_serializable(package="tests")
class Serializable(BoringModule):
    def get_config(self):
        return {"units": self.hparams.units, "lr": self.hparams.lr}


def test_keras_file_round_trip(tmp_path):
    trainer = _fit(tmp_path, module=Serializable(units=5))
    trainer.module.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    x, _ = regression_data(5)
    assert isinstance(loaded, Serializable) and loaded.hparams.units == 5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trainer.module.predict(x, verbose=0))


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    [],                                                    # shuffled arrays, SIGKILL
    ["--data", "tfdata"],                                  # a tf.data pipeline with shuffle
    ["--steps-per-execution", "3"],                        # compiled chunks of 3 steps
    ["--crash", "term", "--data", "tfdata"],               # graceful SIGTERM: save, exit 143
], ids=["arrays-kill", "tfdata-kill", "spe3-kill", "tfdata-sigterm"])
def test_killed_run_resumes_bitwise_equal(tmp_path, args, run_example):
    """The uninterrupted run trains in this process, the crashing and the resuming ones in their
    own (examples/resume.py)."""
    out = run_example("resume.py", "--workdir", str(tmp_path), *args)
    assert "(bitwise, 15 arrays): True" in out, out
    full, resumed = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resume.npz")
    assert int(full["global_step"]) == int(resumed["global_step"]) == 30
    for key in full.files:
        assert np.array_equal(full[key], resumed[key]), key


def test_format_1_checkpoints_still_resume_exactly(tmp_path):
    """Format 1 kept the shuffle seed and the XLA choice in the `trainer` group."""
    from kerastrainer.checkpoint_io import read_checkpoint, write_checkpoint

    kt.seed_everything(1)
    trainer = _fit(tmp_path / "a", epochs=1)
    trainer.save_checkpoint(tmp_path / "v2.ckpt")
    tree = read_checkpoint(tmp_path / "v2.ckpt")
    old = {k: v for k, v in tree.items() if k not in ("data", "tuner", "checksum")}
    old["format_version"] = 1
    old["trainer"] = dict(tree["trainer"], train_seed=tree["data"]["seed"], jit=tree["tuner"]["jit"],
                          num_training_batches=4)
    write_checkpoint(tmp_path / "v1.ckpt", old)
    finals = []
    for name in ("v2", "v1"):
        keras.backend.clear_session()
        module = BoringModule()
        resumed = _fit(tmp_path / name, module=module, epochs=3, ckpt_path=str(tmp_path / f"{name}.ckpt"))
        assert resumed.global_step == 12
        finals.append(module.get_weights())
    for a, b in zip(*finals):
        np.testing.assert_array_equal(a, b)


def test_files_are_written_with_the_mode_open_would_give(tmp_path):
    from kerastrainer.checkpoint_io import atomic_write_text

    previous = os.umask(0o022)
    try:
        trainer = _fit(tmp_path, epochs=1)
        trainer.save_checkpoint(tmp_path / "c.ckpt")
        atomic_write_text(str(tmp_path / "notes.txt"), "hello")
    finally:
        os.umask(previous)
    for name in ("c.ckpt", "notes.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
