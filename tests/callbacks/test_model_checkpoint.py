import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kerastrainer as kt
from kerastrainer.callbacks.model_checkpoint import format_checkpoint_name
from kerastrainer.checkpoint_io import read_checkpoint
from tests.helpers import BoringModule, ScriptedScore as Scripted, quiet_trainer, regression_data

ROOT = Path(__file__).resolve().parent.parent.parent


def _fit(tmp_path, checkpoint, values=(5, 3, 4, 1, 2), **flags):
    trainer = quiet_trainer(max_epochs=len(values), callbacks=[checkpoint], default_root_dir=str(tmp_path),
                            **flags)
    trainer.fit(Scripted(list(values)), train_data=regression_data(8), batch_size=4)
    return trainer


@pytest.mark.parametrize(
    ("template", "metrics", "auto", "expected"),
    [
        ("{epoch}-{step}", {"epoch": 3, "step": 120}, True, "epoch=3-step=120"),
        ("{epoch:02d}-{val_loss:.3f}", {"epoch": 3, "val_loss": 0.12345}, True, "epoch=03-val_loss=0.123"),
        ("model-{epoch:02d}", {"epoch": 7}, False, "model-07"),
        ("{missing}", {}, True, "missing=0"),
    ],
)
def test_filename_templates(template, metrics, auto, expected):
    assert format_checkpoint_name(template, metrics, auto) == expected


@pytest.mark.parametrize(
    ("mode", "top_k", "kept_epochs", "best_epoch", "best_score"),
    [
        ("min", 1, [3], 3, 1.0),
        ("min", 2, [3, 4], 3, 1.0),
        ("max", 2, [0, 2], 0, 5.0),
        ("min", -1, [0, 1, 2, 3, 4], 3, 1.0),
    ],
)
def test_top_k_keeps_the_best_files(tmp_path, mode, top_k, kept_epochs, best_epoch, best_score):
    checkpoint = kt.callbacks.ModelCheckpoint(monitor="score", mode=mode, save_top_k=top_k,
                                              filename="{epoch}")
    _fit(tmp_path, checkpoint)
    files = sorted(os.listdir(tmp_path / "checkpoints"))
    assert files == [f"epoch={e}.ckpt" for e in kept_epochs]
    assert checkpoint.best_model_path == str(tmp_path / "checkpoints" / f"epoch={best_epoch}.ckpt")
    assert checkpoint.best_model_score == best_score


def test_only_the_chief_removes_files_that_leave_the_top_k(tmp_path):
    """Another worker keeps the same top-k book but must not delete the chief's files (#14.1:
    two workers removing one file killed multi-worker jobs with FileNotFoundError)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    chiefs = [folder / f"epoch={epoch}.ckpt" for epoch in range(5)]  # as the chief wrote them
    for path in chiefs:
        path.write_text("the chief's checkpoint")
    checkpoint = kt.callbacks.ModelCheckpoint(monitor="score", save_top_k=1, filename="{epoch}")
    trainer = quiet_trainer(max_epochs=5, callbacks=[checkpoint], default_root_dir=str(tmp_path))
    trainer.is_global_zero = False  # a second worker: its saves go to scratch folders
    trainer.fit(Scripted([5, 3, 4, 1, 2]), train_data=regression_data(8), batch_size=4)
    assert all(path.read_text() == "the chief's checkpoint" for path in chiefs)
    assert checkpoint.best_model_path == str(folder / "epoch=3.ckpt")  # the same book


def test_a_file_already_gone_is_no_error(tmp_path):
    class Vanish(kt.Callback):  # someone else removed the older file first
        def on_train_epoch_start(self, trainer, module):
            trainer.checkpoint_writer.wait()  # the files are in place (a write may be in the background)
            for name in os.listdir(tmp_path / "checkpoints") if trainer.current_epoch else ():
                os.remove(tmp_path / "checkpoints" / name)

    checkpoint = kt.callbacks.ModelCheckpoint(save_top_k=1, filename="{epoch}")
    trainer = quiet_trainer(max_epochs=3, callbacks=[checkpoint, Vanish()],
                            default_root_dir=str(tmp_path))
    trainer.fit(Scripted([1, 2, 3]), train_data=regression_data(8), batch_size=4)
    assert os.listdir(tmp_path / "checkpoints") == ["epoch=2.ckpt"]


def test_without_monitor_the_latest_are_kept(tmp_path):
    checkpoint = kt.callbacks.ModelCheckpoint(save_top_k=2, save_last=True, filename="{epoch}")
    _fit(tmp_path, checkpoint)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch=3.ckpt", "epoch=4.ckpt", "last.ckpt"]
    assert checkpoint.last_model_path.endswith("last.ckpt")


def test_save_top_k_zero_with_last_writes_only_last(tmp_path):
    _fit(tmp_path, kt.callbacks.ModelCheckpoint(save_top_k=0, save_last=True))
    assert os.listdir(tmp_path / "checkpoints") == ["last.ckpt"]


@pytest.mark.parametrize(("kwargs", "steps"), [
    ({"every_n_train_steps": 3}, [3, 6, 9]),
    ({"every_n_train_steps": 4, "every_n_epochs": 1}, [2, 4, 6, 8, 10]),
    ({"every_n_epochs": 2}, [4, 8]),
])
def test_save_schedule(tmp_path, kwargs, steps):
    checkpoint = kt.callbacks.ModelCheckpoint(filename="{step}", save_top_k=-1, **kwargs)
    _fit(tmp_path, checkpoint)
    saved = sorted(int(name[5:-5]) for name in os.listdir(tmp_path / "checkpoints"))
    assert saved == steps


def test_train_time_interval(tmp_path):
    checkpoint = kt.callbacks.ModelCheckpoint(filename="{step}", save_top_k=-1,
                                              train_time_interval=datetime.timedelta(microseconds=1))
    _fit(tmp_path, checkpoint, values=(1, 2), steps_per_execution=1)
    assert len(os.listdir(tmp_path / "checkpoints")) == 4  # every compiled call


def test_weights_only_files_load_without_trainer(tmp_path):
    checkpoint = kt.callbacks.ModelCheckpoint(save_weights_only=True)
    trainer = _fit(tmp_path, checkpoint, values=(1,))
    module = Scripted.load_from_checkpoint(checkpoint.best_model_path, values=[1])
    x, _ = regression_data(4)
    assert (module.predict(x, verbose=0) == trainer.module.predict(x, verbose=0)).all()


def test_missing_monitor_lists_the_keys(tmp_path):
    with pytest.raises(ValueError, match=r"ModelCheckpoint\(monitor='val_acc'\) could not find 'val_acc'.*"
                                         r"Available: loss, score"):
        _fit(tmp_path, kt.callbacks.ModelCheckpoint(monitor="val_acc"))


def test_state_round_trip_continues_top_k(tmp_path):
    first = kt.callbacks.ModelCheckpoint(monitor="score", save_top_k=2, filename="{epoch}")
    _fit(tmp_path, first, values=(5, 3))
    second = kt.callbacks.ModelCheckpoint(monitor="score", save_top_k=2, filename="{epoch}",
                                          dirpath=first.dirpath)
    second.load_state_dict(first.state_dict())
    assert second.best_k_models == first.best_k_models and second.best_model_path == first.best_model_path


def test_a_file_knows_itself_as_best_and_a_resumed_run_keeps_only_the_top_k(tmp_path):
    checkpoint = kt.callbacks.ModelCheckpoint(monitor="score", save_top_k=1, filename="{epoch}")
    _fit(tmp_path, checkpoint, values=(5, 3))
    saved = str(tmp_path / "checkpoints" / "epoch=1.ckpt")
    book = next(state for key, state in read_checkpoint(saved)["callbacks"].items()
                if key.startswith("ModelCheckpoint"))
    assert book["best_model_path"] == saved and [p for p, _ in book["best_k_models"]] == [saved]
    resumed = kt.callbacks.ModelCheckpoint(monitor="score", save_top_k=1, filename="{epoch}")
    trainer = quiet_trainer(max_epochs=4, callbacks=[resumed], default_root_dir=str(tmp_path))
    trainer.fit(Scripted([5, 3, 4, 1]), train_data=regression_data(8), batch_size=4, ckpt_path=saved)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch=3.ckpt"]  # epoch=1 left the top 1
    assert resumed.best_model_path == str(tmp_path / "checkpoints" / "epoch=3.ckpt")


def test_last_knows_itself_so_a_run_resumed_from_its_first_save_replaces_it(tmp_path):
    folder = tmp_path / "checkpoints"
    first = kt.callbacks.ModelCheckpoint(dirpath=str(folder), save_last=True, filename="{epoch}")
    quiet_trainer(max_epochs=1, callbacks=[first]).fit(BoringModule(), train_data=regression_data(8),
                                                       batch_size=4)
    book = next(state for key, state in read_checkpoint(str(folder / "last.ckpt"))["callbacks"].items()
                if key.startswith("ModelCheckpoint"))
    assert book["last_model_path"] == str(folder / "last.ckpt")
    resumed = kt.callbacks.ModelCheckpoint(dirpath=str(folder), save_last=True, filename="{epoch}")
    quiet_trainer(max_epochs=3, callbacks=[resumed]).fit(BoringModule(), train_data=regression_data(8),
                                                         batch_size=4, ckpt_path="last")
    assert sorted(os.listdir(folder)) == ["epoch=2.ckpt", "last.ckpt"]  # no last-v1.ckpt beside it


@pytest.mark.parametrize("counter, expected", [
    (True, ["epoch=0-v1.ckpt", "epoch=0.ckpt", "epoch=1-v1.ckpt", "epoch=1.ckpt"]),
    (False, ["epoch=0.ckpt", "epoch=1.ckpt"]),
])
def test_another_runs_files_are_never_replaced(tmp_path, counter, expected):
    for _ in range(2):  # two runs into one folder
        _fit(tmp_path, kt.callbacks.ModelCheckpoint(monitor=None, save_top_k=-1, filename="{epoch}",
                                                    dirpath=str(tmp_path / "checkpoints"),
                                                    enable_version_counter=counter), values=(5, 3))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == expected


@pytest.mark.parametrize("on_epoch_end, steps", [(None, [4, 8]), (False, [2, 4, 6, 8])])
def test_save_on_train_epoch_end_or_after_every_validation(tmp_path, on_epoch_end, steps):
    checkpoint = kt.callbacks.ModelCheckpoint(save_top_k=-1, filename="{step}",
                                              save_on_train_epoch_end=on_epoch_end)
    trainer = quiet_trainer(max_epochs=2, val_check_interval=0.5, callbacks=[checkpoint],
                            default_root_dir=str(tmp_path), num_sanity_val_steps=1)
    trainer.fit(BoringModule(), train_data=regression_data(16), val_data=regression_data(8), batch_size=4)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(f"step={s}.ckpt" for s in steps)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "best"}, r"Received: mode='best'"),
    ({"save_top_k": -2}, r"Received: save_top_k=-2"),
    ({"every_n_train_steps": -1}, r"Received: every_n_train_steps=-1"),
    ({"train_time_interval": 0}, r"Received: train_time_interval=0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kt.callbacks.ModelCheckpoint(**kwargs)


@pytest.mark.parametrize(("filename", "match"), [
    ("{epoch:q}", r"^ModelCheckpoint: `filename` is not a valid template \(Unknown format code 'q'"),
    ("{epoch:s}", r"^ModelCheckpoint: `filename` is not a valid template"),
])
def test_a_bad_filename_template_is_refused_when_built(filename, match):
    with pytest.raises(ValueError, match=match):
        kt.callbacks.ModelCheckpoint(filename=filename)


def test_a_file_as_dirpath_is_refused_when_built(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(ValueError, match=r"^ModelCheckpoint: `dirpath` must be a folder.*is a file"):
        kt.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "out"))
    with pytest.raises(TypeError, match=r"^ModelCheckpoint: `dirpath` must be .*Received: dirpath=5"):
        kt.callbacks.ModelCheckpoint(dirpath=5)


class CountSaves(kt.Callback):
    def __init__(self):
        self.epochs = []

    def on_save_checkpoint(self, trainer, module, checkpoint):
        self.epochs.append(trainer.current_epoch)


def _tiny_epochs(tmp_path, callbacks, epochs=30, scores=(1.0,) * 30):
    trainer = kt.Trainer(default_root_dir=str(tmp_path), max_epochs=epochs, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(Scripted(scores), train_data=regression_data(8), batch_size=8)
    return trainer


def test_the_default_checkpoint_skips_saves_of_epochs_shorter_than_its_budget_but_never_the_last(tmp_path):
    saves = CountSaves()
    trainer = _tiny_epochs(tmp_path, [saves])
    assert trainer.checkpoint_callback.max_overhead == 0.1
    assert 1 <= len(saves.epochs) < 30  # epochs of milliseconds, saves of more
    assert saves.epochs[0] == 0 and saves.epochs[-1] == 29
    assert os.path.basename(trainer.checkpoint_callback.best_model_path) == "epoch=29-step=30.ckpt"


def test_a_checkpoint_without_a_budget_saves_every_epoch(tmp_path):
    saves = CountSaves()
    _tiny_epochs(tmp_path, [saves, kt.callbacks.ModelCheckpoint()])
    assert saves.epochs == list(range(30))


def test_the_epoch_an_early_stop_ends_is_saved(tmp_path):
    saves = CountSaves()
    stop = kt.callbacks.EarlyStopping(monitor="score", patience=1)
    trainer = _tiny_epochs(tmp_path, [saves, stop, kt.callbacks.ModelCheckpoint(max_overhead=0.01)],
                           scores=[9.0 - epoch for epoch in range(20)] + [20.0] * 10)
    assert trainer.current_epoch == 20  # the score rose at epoch 20: patience 1 stops there
    assert saves.epochs[-1] == trainer.current_epoch


@pytest.mark.parametrize("value", [0, 1, 1.5, True, "10%"])
def test_max_overhead_is_checked(value):
    with pytest.raises(ValueError, match=rf"`max_overhead` must be a fraction .* Received: max_overhead={value!r}"):
        kt.callbacks.ModelCheckpoint(max_overhead=value)


CUT_OFF = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import kerastrainer as kt
from tests.helpers import BoringModule, quiet_trainer, regression_data

root, exit_at = sys.argv[1], int(sys.argv[2])

class DieAt(kt.Callback):
    # os._exit, like SIGKILL: no clean-up, no handler. A save writes its step's file, deletes the
    # one it replaces, then last.ckpt: dying as last.ckpt is built leaves a file no book keeps.
    calls = 0

    def on_save_checkpoint(self, trainer, module, checkpoint):
        DieAt.calls += 1
        if DieAt.calls == exit_at:
            os._exit(9)

saver = kt.callbacks.ModelCheckpoint(dirpath=os.path.join(root, "ck"), every_n_train_steps=1,
                                     filename="{step}", save_last=True)
trainer = quiet_trainer(default_root_dir=root, max_steps=6, async_checkpointing=False,
                        callbacks=[saver, DieAt()])
trainer.fit(BoringModule(), train_data=regression_data(64), batch_size=8, ckpt_path="last")
print("finished", flush=True)
"""


@pytest.mark.slow
def test_a_resume_after_a_kill_leaves_exactly_the_kept_files(tmp_path):
    def run(exit_at):
        return subprocess.run([sys.executable, "-c", CUT_OFF, str(tmp_path), str(exit_at)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    folder = tmp_path / "ck"
    earlier = kt.callbacks.ModelCheckpoint(dirpath=folder, every_n_train_steps=1, filename="earlier-{step}")
    quiet_trainer(max_steps=2, callbacks=[earlier]).fit(BoringModule(), train_data=regression_data(64),
                                                        batch_size=8)  # another run's file, alike
    (folder / "yours.ckpt").write_bytes(b"not a checkpoint")  # and one of the user's
    killed = run(exit_at=6)  # at the third save's last.ckpt: step=3.ckpt is on disk, no book has it
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert sorted(os.listdir(folder)) == [
        ".kerastrainer.lock", "earlier-step=2.ckpt", "last.ckpt", "step=3.ckpt", "yours.ckpt"]
    resumed = run(exit_at=0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sorted(os.listdir(folder)) == [  # step=3.ckpt saved again in place (no -v1), then replaced
        "earlier-step=2.ckpt", "last.ckpt", "step=6.ckpt", "yours.ckpt"]
    assert read_checkpoint(tmp_path / "ck" / "last.ckpt")["trainer"]["global_step"] == 6
