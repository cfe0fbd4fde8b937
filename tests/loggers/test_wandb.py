"""WandbLogger in real offline runs, read back from the run files W&B wrote."""

import csv
import os
import sys

import pytest

import kerastrainer as kt
from kerastrainer.callbacks import Callback, ModelCheckpoint
from kerastrainer.loggers import CSVLogger, WandbLogger
from tests.helpers import BoringModule, ScriptedScore, regression_data
from tests.loggers.logged_fit import logged_fit
from tests.loggers.wandb_files import read_run, run_files

pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def _quiet_offline(monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network, whatever a test passes


def _logger(tmp_path, **kwargs):
    return WandbLogger("proj", save_dir=str(tmp_path), offline=True, **kwargs)


def test_config_metrics_by_global_step_and_summary(tmp_path):
    logger, csv_logger = _logger(tmp_path, name="first"), CSVLogger(str(tmp_path / "csv"))
    logged_fit(tmp_path, BoringModule(units=5), loggers=[csv_logger, logger])
    [run_file] = run_files(logger.log_dir)
    run = read_run(run_file)
    assert run["id"] == logger.run_id and run["exit_code"] == 0
    assert run["config"]["units"] == 5 and run["config"]["batch_size"] == 8  # module's and DataModule's
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["val_loss"]]
    logged = [row for row in run["history"] if "val_loss" in row]
    assert [row["trainer/global_step"] for row in logged] == [int(row["step"]) for row in rows]
    assert [row["val_loss"] for row in logged] == pytest.approx([float(row["val_loss"]) for row in rows])
    assert run["summary"]["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]))


class Raises(Callback):
    def on_train_epoch_end(self, trainer, module):
        raise RuntimeError("boom")


def test_a_failed_run_finishes_with_exit_code_1(tmp_path):
    logger = _logger(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        logged_fit(tmp_path, loggers=logger, callbacks=[Raises()])
    assert read_run(run_files(logger.log_dir)[0])["exit_code"] == 1


@pytest.mark.parametrize(("log_model", "logged"), [
    (True, [("epoch=1-step=6.ckpt", ["best", "latest"])]),
    ("all", [("epoch=0-step=3.ckpt", ["best", "latest"]), ("epoch=1-step=6.ckpt", ["best", "latest"])]),
    (False, []),
])
def test_checkpoints_as_model_artifacts(tmp_path, log_model, logged):
    logger = _logger(tmp_path, log_model=log_model)
    logged_fit(tmp_path, ScriptedScore([3.0, 1.0, 2.0]), loggers=logger, epochs=3,
         callbacks=[ModelCheckpoint(monitor="score", save_top_k=1)])
    artifacts = read_run(run_files(logger.log_dir)[0])["artifacts"]
    assert [(a["files"], sorted(a["aliases"])) for a in artifacts] == [([name], aliases)
                                                                        for name, aliases in logged]
    assert all(a["name"] == f"model-{logger.run_id}" for a in artifacts)
    scores = {"epoch=0-step=3.ckpt": 3.0, "epoch=1-step=6.ckpt": 1.0}
    assert [a["metadata"]["score"] for a in artifacts] == [scores[name] for name, _ in logged]


def test_a_resumed_fit_continues_the_same_run(tmp_path):
    first = _logger(tmp_path)
    logged_fit(tmp_path, loggers=first, callbacks=[ModelCheckpoint(save_last=True)])
    second = _logger(tmp_path)
    logged_fit(tmp_path, loggers=second, epochs=4, callbacks=[ModelCheckpoint(save_last=True)], ckpt_path="last")
    assert second.run_id == first.run_id
    runs = [read_run(path) for path in run_files(os.path.dirname(first.log_dir))]
    assert [run["id"] for run in runs] == [first.run_id] * 2
    epochs = [row["epoch"] for run in runs for row in run["history"] if "epoch" in row]
    assert epochs == [0, 1, 2, 3]


def test_log_model_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"Received: log_model=1"):
        _logger(tmp_path, log_model=1)


def test_without_wandb_the_message_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install kerastrainer\[wandb\]"):
        _logger(tmp_path)


class FillTheDisk(Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch != 1:
            return
        with open(os.path.join(self.folder, "filler"), "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"x" * 65536)
            except OSError:
                pass


def test_a_run_folder_that_fills_up_is_named_in_one_warning(small_disk, recwarn):
    logger = WandbLogger("proj", save_dir=str(small_disk), offline=True)
    trainer = kt.Trainer(default_root_dir=str(small_disk), max_epochs=3, logger=[logger], log_every_n_steps=2,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[FillTheDisk(str(small_disk))])
    trainer.fit(BoringModule(), train_data=regression_data(32), batch_size=8)  # it finishes, as W&B lets it
    full = [str(w.message) for w in recwarn if "bytes free" in str(w.message)]
    assert len(full) == 1, full
    assert full[0].startswith(f"WandbLogger: the run's folder {logger.log_dir!r} has ")
