"""MLFlowLogger against a real MLflow file store, read back with MlflowClient."""

import csv
import os
import sys

import pytest

from kerastrainer.callbacks import Callback, ModelCheckpoint
from kerastrainer.data import ArrayDataModule
from kerastrainer.loggers import CSVLogger, MLFlowLogger
from tests.helpers import BoringModule, ScriptedScore, regression_data
from tests.loggers.logged_fit import logged_fit

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 asks for it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _logger(tmp_path, **kwargs):
    return MLFlowLogger("exp", tracking_uri=f"file:{tmp_path}/mlruns", **kwargs)


def test_params_metrics_at_their_steps_and_a_finished_run(tmp_path):
    logger = _logger(tmp_path, run_name="first", tags={"team": "vision"})
    csv_logger = CSVLogger(str(tmp_path / "csv"))
    logged_fit(tmp_path, BoringModule(units=5), loggers=[csv_logger, logger])
    client = mlflow.tracking.MlflowClient(f"file:{tmp_path}/mlruns")
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.tags["team"] == "vision"
    assert run.data.params["units"] == "5" and run.data.params["lr"] == "0.05"
    assert run.data.params["batch_size"] == "8"  # the DataModule's hyperparameters too
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["val_loss"]]
    history = client.get_metric_history(logger.run_id, "val_loss")
    assert [m.step for m in history] == [int(row["step"]) for row in rows]
    assert [m.value for m in history] == pytest.approx([float(row["val_loss"]) for row in rows])
    assert client.get_experiment(logger.experiment_id).name == "exp"


class Raises(Callback):
    def __init__(self, error):
        self.error = error

    def on_train_epoch_end(self, trainer, module):
        raise self.error


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("boom"), "FAILED"),
                                               (KeyboardInterrupt(), "KILLED")])
def test_a_run_that_ends_badly_has_mlflows_status(tmp_path, error, status):
    logger = _logger(tmp_path)
    with pytest.raises(type(error)):
        logged_fit(tmp_path, loggers=logger, callbacks=[Raises(error)])
    assert logger.experiment.get_run(logger.run_id).info.status == status


@pytest.mark.parametrize(("log_model", "logged"), [
    (True, ["epoch=1-step=6.ckpt"]),  # the kept file, when the run ends
    ("all", ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]),  # each one as it is written
    (False, []),
])
def test_checkpoints_as_artifacts(tmp_path, log_model, logged):
    logger = _logger(tmp_path, log_model=log_model)
    checkpoint = ModelCheckpoint(monitor="score", save_top_k=1)
    logged_fit(tmp_path, ScriptedScore([3.0, 1.0, 2.0]), loggers=logger, epochs=3, callbacks=[checkpoint])
    artifacts = logger.experiment.list_artifacts(logger.run_id, "checkpoints")
    assert sorted(os.path.basename(a.path) for a in artifacts) == logged
    if logged:
        local = logger.experiment.download_artifacts(logger.run_id, f"checkpoints/{logged[-1]}",
                                                     str(tmp_path / "down"))
        with open(local, "rb") as copy, open(checkpoint.best_model_path, "rb") as kept:
            assert copy.read() == kept.read()


def test_a_resumed_fit_continues_the_same_run(tmp_path):
    first = _logger(tmp_path)
    logged_fit(tmp_path, loggers=first, callbacks=[ModelCheckpoint(save_last=True)])
    second = _logger(tmp_path)  # a new process would make it so: no run id given
    logged_fit(tmp_path, loggers=second, epochs=4, callbacks=[ModelCheckpoint(save_last=True)],
         ckpt_path="last")
    assert second.run_id == first.run_id
    history = second.experiment.get_metric_history(second.run_id, "epoch")
    assert sorted({int(m.value) for m in history}) == [0, 1, 2, 3]
    assert second.experiment.get_run(second.run_id).info.status == "FINISHED"


def test_validate_after_fit_logs_to_the_run_and_ends_it_again(tmp_path):
    logger = _logger(tmp_path)
    trainer = logged_fit(tmp_path, loggers=logger)
    trainer.validate(datamodule=ArrayDataModule(*regression_data(16), batch_size=8, val_split=0.5))
    run = logger.experiment.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert len(logger.experiment.get_metric_history(logger.run_id, "val_loss")) == 3  # 2 epochs + validate


def test_a_name_mlflow_refuses_is_logged_under_a_clean_one(tmp_path):
    logger = _logger(tmp_path)
    with pytest.warns(UserWarning, match=r"'acc@5'.*'acc_5'"):
        logger.log_metrics({"acc@5": 0.5}, step=3)
    assert logger.experiment.get_run(logger.run_id).data.metrics == {"acc_5": 0.5}


def test_log_model_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"`log_model` must be False, True .* Received: log_model='best'"):
        _logger(tmp_path, log_model="best")


def test_without_mlflow_the_message_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install kerastrainer\[mlflow\]"):
        _logger(tmp_path)


def test_a_refused_folder_store_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    logger = _logger(tmp_path)
    try:
        logger.run_id
    except RuntimeError as error:
        assert "MLFLOW_ALLOW_FILE_STORE=true" in str(error) and "tracking_uri" in str(error)
    else:
        pytest.skip(f"MLflow {mlflow.__version__} still takes folder stores")


def test_an_unreachable_tracking_server_fails_at_once_naming_its_uri(tmp_path):
    logger = MLFlowLogger("exp", tracking_uri="http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ConnectionError, match=r"^MLFlowLogger: the tracking server 'http://127\.0\.0\.1:9' "
                                              r"cannot be reached"):
        logged_fit(tmp_path, loggers=[logger])
