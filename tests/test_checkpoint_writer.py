"""CheckpointWriter: files written on a background thread, in order, errors surfaced later."""

import os
import threading

import numpy as np
import pytest

import kerastrainer as kt
from kerastrainer.callbacks import ModelCheckpoint
from kerastrainer.checkpoint import read_checkpoint
from kerastrainer.checkpoint_writer import CheckpointWriter
from tests.helpers import BoringModule, ScriptedScore, regression_data


def test_the_write_runs_in_the_background_and_its_follow_ups_after_it(tmp_path):
    release, order = threading.Event(), []

    def save(path):
        release.wait(timeout=30)
        with open(path, "w") as handle:
            handle.write("done")
        order.append("written")

    writer = CheckpointWriter(background=True)
    writer.write(save, tmp_path / "a")
    writer.after_pending(lambda: order.append("follow-up"))
    assert not (tmp_path / "a").exists() and order == []  # the caller went on
    release.set()
    writer.wait()
    assert (tmp_path / "a").read_text() == "done" and order == ["written", "follow-up"]
    writer.close()


def test_a_failed_write_skips_its_follow_ups_and_is_raised_once():
    def save():
        raise OSError(28, "No space left on device")

    ran = []
    writer = CheckpointWriter(background=True)
    writer.write(save)
    writer.after_pending(lambda: ran.append("removed the older file"))
    with pytest.raises(OSError, match="No space left"):
        writer.write(lambda: ran.append("next"))  # the next save raises it
    assert ran == []
    writer.write(lambda: ran.append("next"))  # raised once: later writes go on
    writer.close()
    assert ran == ["next"]


class BreaksAt(kt.Callback):
    """Adds an entry no checkpoint can hold to the checkpoint of epoch ``epoch``; records the
    epochs that started."""

    def __init__(self, epoch):
        self.epoch, self.started = epoch, []

    def on_train_epoch_start(self, trainer, module):
        self.started.append(trainer.current_epoch)

    def on_save_checkpoint(self, trainer, module, checkpoint):
        if trainer.current_epoch == self.epoch:
            checkpoint["handle"] = object()


def _fit(tmp_path, *, epochs=3, callbacks=(), **flags):
    trainer = kt.Trainer(default_root_dir=str(tmp_path), max_epochs=epochs, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                         **flags)
    trainer.fit(ScriptedScore([3.0, 2.0, 1.0, 0.5]), train_data=regression_data(16), batch_size=8)
    return trainer


@pytest.mark.parametrize(("async_checkpointing", "started"), [(True, [0, 1, 2]), (False, [0, 1])])
def test_a_failed_write_stops_the_fit_at_the_next_save_and_keeps_the_older_file(
        tmp_path, async_checkpointing, started):
    breaks = BreaksAt(epoch=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="score", save_top_k=1)
    with pytest.raises(TypeError, match="neither a NumPy array nor JSON-serialisable"):
        _fit(tmp_path, callbacks=[checkpoint, breaks], async_checkpointing=async_checkpointing)
    assert breaks.started == started  # in the background, epoch 2 ran before its save raised
    assert os.listdir(tmp_path / "ckpt") == ["epoch=0-step=2.ckpt"]  # kept: its successor failed


def test_a_failed_last_write_is_raised_when_the_fit_ends(tmp_path):
    with pytest.raises(TypeError, match="neither a NumPy array nor JSON-serialisable"):
        _fit(tmp_path, epochs=1, callbacks=[BreaksAt(epoch=0)])


def test_background_and_direct_writes_hold_the_same_state(tmp_path):
    trees = []
    for flag in (True, False):
        kt.seed_everything(0)  # the same initial weights and order
        checkpoint = ModelCheckpoint(dirpath=tmp_path / str(flag), save_top_k=2, monitor="score")
        _fit(tmp_path / "run", callbacks=[checkpoint], async_checkpointing=flag)
        assert sorted(os.listdir(tmp_path / str(flag))) == ["epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt"]
        trees.append(read_checkpoint(checkpoint.best_model_path))
    background, direct = trees
    for group in ("weights", "optimizer"):
        np.testing.assert_equal(background[group], direct[group])
    assert background["trainer"] == direct["trainer"]


def test_save_checkpoint_outside_a_fit_returns_with_the_file_in_place(tmp_path):
    trainer = _fit(tmp_path, epochs=1)
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    assert read_checkpoint(tmp_path / "after.ckpt")["format"] == "kerastrainer.checkpoint"


def test_async_checkpointing_is_checked():
    with pytest.raises(TypeError, match=r"`async_checkpointing` must be True or False. Received: async_checkpointing='yes'"):
        kt.Trainer(async_checkpointing="yes")


def test_the_default_module_trains_with_background_writes(tmp_path):
    trainer = kt.Trainer(default_root_dir=str(tmp_path), max_epochs=2, enable_progress_bar=False,
                         enable_model_summary=False)
    assert trainer.async_checkpointing is True
    trainer.fit(BoringModule(), train_data=regression_data(16), batch_size=8)
    assert os.path.isfile(trainer.checkpoint_callback.best_model_path)
