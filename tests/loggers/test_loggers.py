import csv
import glob
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kerastrainer as kt
from kerastrainer.loggers import CSVLogger, Logger, TensorBoardLogger, tensorboard_available
from tests.helpers import BoringClassifier, BoringModule, classification_data, regression_data


def _trainer(tmp_path, **flags):
    flags.setdefault("enable_progress_bar", False)
    flags.setdefault("enable_model_summary", False)
    return kt.Trainer(default_root_dir=str(tmp_path), **flags)


def _fit(tmp_path, epochs=3, ckpt_path=None, **flags):
    x, y = classification_data(rows=48)
    trainer = _trainer(tmp_path, max_epochs=epochs, log_every_n_steps=4, **flags)
    trainer.fit(BoringClassifier(), train_data=(x, y), val_data=(x[:16], y[:16]), batch_size=8,
                ckpt_path=ckpt_path)
    return trainer


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_default_logger_writes_a_versioned_run_folder(tmp_path):
    trainer = _fit(tmp_path)
    run = tmp_path / "kt_logs" / "version_0"
    assert trainer.log_dir == str(run)
    assert set(os.listdir(run)) >= {"checkpoints", "hparams.json", "metrics.csv"}
    assert glob.glob(str(run / "events.out.tfevents.*")), "TensorBoard shares the run folder"
    first_rows = _rows(run / "metrics.csv")
    second = _fit(tmp_path, epochs=1)
    assert second.log_dir == str(tmp_path / "kt_logs" / "version_1")  # never overwrite a run
    assert _rows(run / "metrics.csv") == first_rows


def test_trainers_built_before_either_fits_get_their_own_run_folders(tmp_path):
    first, second = _trainer(tmp_path, max_epochs=1), _trainer(tmp_path, max_epochs=1)
    assert not (tmp_path / "kt_logs").exists()  # nothing claimed before a run starts
    for trainer in (first, second):
        trainer.fit(BoringModule(), train_data=regression_data(8), batch_size=4)
    assert [first.log_dir, second.log_dir] == [str(tmp_path / "kt_logs" / f"version_{n}")
                                                for n in (0, 1)]
    for trainer in (first, second):  # one epoch row each, not both runs in one file
        assert [row["step"] for row in _rows(os.path.join(trainer.log_dir, "metrics.csv"))] == ["2"]


def test_runs_starting_together_never_share_a_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from kerastrainer.loggers.base import claim_version

    (tmp_path / "kt_logs" / "version_3").mkdir(parents=True)  # an earlier run
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = sorted(pool.map(lambda _: claim_version(str(tmp_path / "kt_logs")), range(16)))
    assert versions == list(range(4, 20))


def test_user_loggers_in_one_experiment_share_its_run_folder(tmp_path):
    loggers = [CSVLogger(tmp_path), TensorBoardLogger(tmp_path)]
    _fit(tmp_path, logger=loggers)
    assert loggers[0].log_dir == loggers[1].log_dir == str(tmp_path / "kt_logs" / "version_0")


def test_a_run_removes_the_temp_files_killed_writers_left_in_its_folder(tmp_path):
    run = tmp_path / "kt_logs" / "version_0"
    run.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = run / f".metrics.csv.tmp-{socket.gethostname()}-{int(gone.stdout)}-x1y2z3"
    stale.write_text("half a row")
    _fit(tmp_path, epochs=1, logger=CSVLogger(tmp_path, version=0))
    assert not stale.exists() and (run / "metrics.csv").exists()


def test_csv_rows_steps_and_epochs(tmp_path):
    trainer = _fit(tmp_path, logger=CSVLogger(tmp_path))
    rows = _rows(os.path.join(trainer.log_dir, "metrics.csv"))
    step_rows = [r for r in rows if r["epoch"] == ""]
    epoch_rows = [r for r in rows if r["epoch"] != ""]
    assert [int(r["step"]) for r in step_rows] == [4, 8, 12, 16]  # every 4 of 18 steps
    assert [int(r["epoch"]) for r in epoch_rows] == [0, 1, 2]
    assert [int(r["step"]) for r in epoch_rows] == [6, 12, 18]
    assert all(r["val_loss"] != "" for r in epoch_rows) and all(r["val_loss"] == "" for r in step_rows)
    assert float(epoch_rows[-1]["acc"]) == pytest.approx(trainer.callback_metrics["acc"], rel=1e-6)
    assert list(rows[0])[:2] == ["epoch", "step"]


def test_csv_columns_grow_when_new_keys_appear(tmp_path):
    class LateKey(BoringModule):
        def on_train_epoch_end(self):
            if self.trainer.current_epoch == 1:
                self.log("late", 1.5)

    trainer = _trainer(tmp_path, max_epochs=3, logger=CSVLogger(tmp_path, flush_every_n_rows=1))
    trainer.fit(LateKey(), train_data=regression_data(8))
    rows = _rows(os.path.join(trainer.log_dir, "metrics.csv"))
    assert [r["late"] for r in rows if r["epoch"] != ""] == ["", "1.5", "1.5"]
    assert not [p for p in os.listdir(trainer.log_dir) if ".tmp-" in p]


def test_csv_rows_are_appended_and_the_file_rewritten_only_for_new_columns(tmp_path):
    logger = CSVLogger(tmp_path, flush_every_n_rows=2)
    for step in (1, 2):
        logger.log_metrics({"loss": 0.5}, step)
    first = os.stat(logger.path).st_ino
    with open(logger.path) as handle:
        written = handle.read()
    for step in (3, 4):
        logger.log_metrics({"loss": 0.25}, step)
    assert os.stat(logger.path).st_ino == first  # appended in place, not rewritten
    with open(logger.path) as handle:
        assert handle.read().startswith(written)
    logger.log_metrics({"loss": 0.125, "acc": 1.0, "epoch": 0}, 5)
    logger.save()
    assert os.stat(logger.path).st_ino != first  # a new column: rewritten (temp file + rename)
    rows = _rows(logger.path)
    assert list(rows[0]) == ["epoch", "step", "acc", "loss"]
    assert [(r["step"], r["acc"]) for r in rows] == [("1", ""), ("2", ""), ("3", ""), ("4", ""),
                                                     ("5", "1.0")]
    assert logger.rows[-1] == {"step": 5, "epoch": 0, "acc": 1.0, "loss": 0.125}


def test_csv_a_row_cut_short_by_a_crash_is_dropped(tmp_path):
    logger = CSVLogger(tmp_path, flush_every_n_rows=1)
    logger.log_metrics({"loss": 0.5}, 1)
    with open(logger.path, "a") as handle:
        handle.write("2,0.2")  # an append interrupted before its newline
    again = CSVLogger(tmp_path, version=0, flush_every_n_rows=1)
    again.log_metrics({"loss": 0.25}, 3)
    assert [(r["step"], r["loss"]) for r in _rows(again.path)] == [("1", "0.5"), ("3", "0.25")]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_tensorboard_logging_does_not_grow_memory_per_step(tmp_path):
    """TensorFlow caches every distinct Python scalar it converts to a tensor (about 0.75 KB each,
    never freed): logging Python floats at Python int steps grew the process by ~1.5 KB a step."""
    logger = TensorBoardLogger(tmp_path)
    for step in range(200):  # warm-up: TensorFlow's own first-call allocations
        logger.log_metrics({"loss": step / 7}, step)
    before = _resident_bytes()
    for step in range(200, 3200):
        logger.log_metrics({"loss": step / 7}, step)
    grown = _resident_bytes() - before
    logger.finalize("success")
    assert grown < 1.5e6, f"{grown / 3000:.0f} bytes per logged step"


def test_history_is_a_dict_of_lists(tmp_path):
    trainer = _fit(tmp_path, logger=False)
    assert trainer.history["epoch"] == [0, 1, 2]
    assert len(trainer.history["val_acc"]) == 3
    assert trainer.history["loss"][-1] == trainer.callback_metrics["loss"]


def test_resume_appends_to_the_same_run_without_duplicated_steps(tmp_path):
    saver = kt.callbacks.ModelCheckpoint(every_n_train_steps=9, filename="{step}", save_top_k=-1)
    _fit(tmp_path, epochs=3, callbacks=[saver])
    run = tmp_path / "kt_logs" / "version_0"
    full_rows = _rows(run / "metrics.csv")
    trainer = _fit(tmp_path, epochs=3, ckpt_path=str(run / "checkpoints" / "step=9.ckpt"))
    assert trainer.log_dir == str(run)
    rows = _rows(run / "metrics.csv")
    keys = [(r["epoch"], r["step"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(full_rows)
    assert trainer.history["epoch"] == [0, 1, 2]


def test_hparams_are_written(tmp_path):
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(BoringModule(units=7), train_data=regression_data(8))
    assert '"units": 7' in open(os.path.join(trainer.log_dir, "hparams.json")).read()


def test_tensorboard_scalars_histograms_and_graph(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb", histogram_freq=1)
    _fit(tmp_path, epochs=2, logger=logger)
    tags, kinds = set(), set()
    for event_file in glob.glob(os.path.join(logger.log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            kinds.add(event.WhichOneof("what"))
            for value in event.summary.value:
                tags.add(value.tag)
    assert {"loss", "val_loss", "acc", "val_acc"} <= tags
    assert any("kernel" in tag for tag in tags)  # weight histograms
    assert "graph_def" in kinds


def test_tensorboard_rows_written_compiled_are_the_rows_written_op_by_op(tmp_path):
    """After PLAIN_ROWS rows with one set of keys, one compiled call writes each row of that set."""
    from kerastrainer.loggers.tensorboard import PLAIN_ROWS

    logger = TensorBoardLogger(tmp_path, name="tb")
    rows = PLAIN_ROWS + 20
    for step in range(rows):
        logger.log_metrics({"loss": step / 7, "val_loss/dataloader_idx_1": -step, "epoch": 3}, step)
    logger.log_metrics({"lr": 0.5}, rows)
    assert list(logger._row_writers) == [("loss", "val_loss/dataloader_idx_1")]
    logger.finalize("success")
    written, plugins = [], {}
    for event_file in glob.glob(os.path.join(logger.log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                written.append((value.tag, event.step, float(tf.make_ndarray(value.tensor))))
                plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
    expected = [(key, step, float(np.float32(value))) for step in range(rows)
                for key, value in (("loss", step / 7), ("val_loss/dataloader_idx_1", -step))]
    assert sorted(written) == sorted(expected + [("lr", rows, 0.5)])
    assert plugins == {"loss": "scalars", "val_loss/dataloader_idx_1": "scalars", "lr": "scalars"}


def test_missing_tensorboard_gives_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what a missing package looks like
    assert not tensorboard_available()
    loggers = kt.Trainer(enable_progress_bar=False, default_root_dir=tmp_path).loggers
    assert [type(logger).__name__ for logger in loggers] == ["CSVLogger"]
    with pytest.raises(ModuleNotFoundError, match=re.escape("pip install kerastrainer[tensorboard]")):
        TensorBoardLogger("x")


def test_custom_logger_and_bad_logger(tmp_path):
    class Collect(Logger):
        def __init__(self):
            super().__init__()
            self.seen, self.status = [], None

        def log_metrics(self, metrics, step):
            self.seen.append((step, dict(metrics)))

        def finalize(self, status):
            self.status = status

    collect = Collect()
    trainer = _trainer(tmp_path, max_epochs=2, logger=[collect], log_every_n_steps=1)
    trainer.fit(BoringModule(), train_data=regression_data(8), batch_size=4)
    assert [s for s, _ in collect.seen] == [1, 2, 2, 3, 4, 4] and collect.status == "success"
    trainer.test(data=regression_data(8))
    assert "test_loss" in collect.seen[-1][1]
    with pytest.raises(TypeError, match="`logger` must be True, False"):
        kt.Trainer(logger="csv")


def test_failed_run_finalizes_with_failed(tmp_path):
    class Collect(Logger):
        status = None

        def finalize(self, status):
            Collect.status = status

    class Boom(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            raise RuntimeError("boom")

    trainer = _trainer(tmp_path, max_epochs=2, logger=Collect(), callbacks=[Boom()])
    with pytest.raises(RuntimeError):
        trainer.fit(BoringModule(), train_data=regression_data(8))
    assert Collect.status == "failed"


def test_step_rows_follow_optimizer_steps_under_accumulation(tmp_path):
    trainer = _trainer(tmp_path, max_epochs=1, log_every_n_steps=2, accumulate_grad_batches=2,
                       logger=CSVLogger(tmp_path))
    trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=4)  # 8 batches, 4 steps
    rows = _rows(os.path.join(trainer.log_dir, "metrics.csv"))
    assert [int(r["step"]) for r in rows if r["epoch"] == ""] == [2, 4]


class FailingFinalize(Logger):
    def finalize(self, status):
        raise OSError(28, "No space left on device")


class Recording(Logger):
    def __init__(self, save_dir):
        super().__init__(save_dir)
        self.status = None

    def finalize(self, status):
        self.status = status


def test_a_failing_clean_up_never_hides_the_original_error(tmp_path):
    class Broken(kt.Callback):
        def on_train_epoch_end(self, trainer, module):
            raise ValueError("the real problem")

    second = Recording(tmp_path)
    trainer = kt.Trainer(max_epochs=1, logger=[FailingFinalize(tmp_path), second], callbacks=[Broken()],
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    with pytest.raises(ValueError, match="the real problem") as caught:
        trainer.fit(BoringModule(), train_data=regression_data(8))
    assert any("FailingFinalize.finalize also failed: OSError" in note for note in caught.value.__notes__)
    assert second.status == "failed"  # the other logger still finalized


def test_a_failing_clean_up_keeps_the_sigterm_exit_status(tmp_path):
    class Terminate(kt.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch_idx):
            os.kill(os.getpid(), signal.SIGTERM)

    second = Recording(tmp_path)
    trainer = kt.Trainer(max_epochs=3, logger=[FailingFinalize(tmp_path), second],
                         callbacks=[Terminate()], default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(SystemExit) as caught:
        trainer.fit(BoringModule(), train_data=regression_data(8), batch_size=4)
    assert caught.value.code == 143  # not 1: the clean-up failure is a note
    assert any("also failed: OSError" in note for note in caught.value.__notes__)
    assert second.status == "interrupted"


def test_a_failing_clean_up_after_success_is_raised(tmp_path):
    trainer = kt.Trainer(max_epochs=1, logger=[FailingFinalize(tmp_path)], enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    with pytest.raises(OSError, match="No space left"):
        trainer.fit(BoringModule(), train_data=regression_data(8))


def test_mid_epoch_validation_reaches_the_loggers_at_its_step(tmp_path):
    x, y = regression_data(32)
    trainer = kt.Trainer(max_epochs=1, val_check_interval=0.5, default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(BoringModule(), train_data=(x, y), val_data=(x, y), batch_size=4)  # 8 batches
    with open(os.path.join(trainer.log_dir, "metrics.csv")) as handle:
        rows = list(csv.DictReader(handle))
    validated = [int(r["step"]) for r in rows if r.get("val_loss")]
    assert validated == [4, 8]  # the mid-epoch run at step 4, the epoch row at step 8


def test_after_save_checkpoint_hears_of_each_written_file(tmp_path):
    heard = []

    class Recorder(Logger):
        def after_save_checkpoint(self, checkpoint_callback):
            path = checkpoint_callback.last_model_path
            heard.append((os.path.basename(path), os.path.isfile(path)))  # complete, in place

    checkpoint = kt.callbacks.ModelCheckpoint(save_top_k=0, save_last=True)
    _fit(tmp_path, logger=Recorder(str(tmp_path)), callbacks=[checkpoint])
    assert heard == [("last.ckpt", True)] * 3
