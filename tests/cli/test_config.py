"""The config-file CLI: ``kerastrainer fit|validate|test|predict`` and ``kt.cli.CLI``, through real
subprocesses (each entry point once) and config files, with examples/cli's module and DataModule."""

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import kerastrainer as kt
from kerastrainer.flags import TrainerFlags

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cli"
SCRIPT = Path(sys.executable).parent / "kerastrainer"  # the console script of this environment
QUICK = ["--data.rows", "200", "--trainer.enable_progress_bar", "false"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """examples/cli copied into a fresh folder, which is the working directory."""
    for name in ("digits_cli.py", "main.py", "config.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _run(command, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def _last_row(run_dir):
    with open(run_dir / "metrics.csv") as rows:
        return [row for row in csv.DictReader(rows) if row.get("val_loss")][-1]


@pytest.mark.slow
def test_fit_with_an_override_then_validate_test_and_predict_from_its_checkpoints(project, capsys):
    fit = _run([SCRIPT, "fit", "--config", "config.yaml", "--trainer.max_epochs", "2", *QUICK], project)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = project / "kt_logs" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2 and saved["data"]["init_args"]["rows"] == 200
    assert saved["trainer"]["callbacks"][0]["class_path"] == "kerastrainer.callbacks.EarlyStopping"
    last = _last_row(run)
    assert last["epoch"] == "1"  # two epochs, the override won over the file's 5

    validate = _run([sys.executable, "-m", "kerastrainer", "validate", "--config", "config.yaml",
                     "--ckpt_path", "last", *QUICK], project)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert float(_last_row(project / "kt_logs" / "version_1")["val_loss"]) == pytest.approx(
        float(last["val_loss"]), rel=1e-5)  # the trained weights, not fresh ones

    # Both entry points ran as a user types them, in processes of their own; test and predict run
    # the same command in this process (each process costs some 7 s of CPU to import TensorFlow).
    capsys.readouterr()
    assert kt.cli.main(["test", "--config", "config.yaml", "--ckpt_path", "best", *QUICK]) == 0
    assert kt.cli.main(["predict", "--config", "config.yaml", "--ckpt_path", "last", *QUICK]) == 0
    path = capsys.readouterr().out.split("Predictions: ")[1].split()[0]
    assert np.load(path).shape == (30, 10)  # the 15% test split of 200 rows, 10 logits


def test_a_users_main_py_with_fixed_classes(project, run_example):
    run_example(project / "main.py", "fit", "--model.hidden", "16", "--trainer.max_epochs", "1",
                "--trainer.logger", "true", *QUICK)  # `python main.py fit ...`, in this process
    saved = yaml.safe_load((project / "kt_logs" / "version_0" / "config.yaml").read_text())
    assert saved["model"] == {"hidden": 16, "lr": 0.002, "dropout": 0.1}  # no class_path needed


def test_later_sources_win_and_print_config_shows_the_result(project, capsys):
    (project / "more.yaml").write_text("trainer:\n  max_epochs: 7\n  log_every_n_steps: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        kt.cli.CLI(args=["fit", "--config", "config.yaml", "--config", "more.yaml",
                         "--trainer.max_epochs", "9", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_epochs"] == 9  # the command line, last
    assert printed["trainer"]["log_every_n_steps"] == 3  # the second file
    assert printed["model"]["init_args"]["lr"] == 0.003  # the first file
    assert printed["trainer"]["precision"] == "32"


def test_everything_is_built_from_the_config(project):
    cli = kt.cli.CLI(args=["fit", "--config", "config.yaml", "--seed_everything", "true"], run=False)
    assert isinstance(cli.trainer, kt.Trainer) and cli.trainer.max_epochs == 5
    assert type(cli.model).__name__ == "DigitModule" and cli.model.hparams.lr == 0.003
    assert type(cli.datamodule).__name__ == "DigitData" and cli.datamodule.batch_size == 32
    stopping = cli.trainer.early_stopping_callback
    assert stopping is not None and stopping.patience == 3
    seed = cli.config["fit"]["seed_everything"]
    assert isinstance(seed, int) and not isinstance(seed, bool)  # a random seed, recorded


@pytest.mark.parametrize("option, match", [
    (["--trainer.max_epohcs", "2"], r"unrecognized arguments: --trainer.max_epohcs 2"),
    (["--trainer.max_epochs", "two"], r'Parser key "trainer.max_epochs"'),
    (["--trainer.max_epochs", "-5"], r"`max_epochs` must be an integer >= -1.*Received: max_epochs=-5"),
    (["--model.hiden", "3"], r"hiden"),
])
def test_a_typo_or_a_wrong_value_is_named(project, capsys, option, match):
    with pytest.raises(SystemExit) as exit_info:
        kt.cli.CLI(args=["fit", "--config", "config.yaml", *option], run=False)
    assert exit_info.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_help_lists_every_trainer_flag(capsys):
    with pytest.raises(SystemExit):
        kt.cli.CLI(args=["fit", "--help"])
    text = capsys.readouterr().out
    flags = list(TrainerFlags.__dataclass_fields__)
    assert [name for name in flags if f"--trainer.{name}" not in text] == []
    assert "--model.help" in text and "--ckpt_path" in text and "--seed_everything" in text


def test_without_jsonargparse_the_message_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['jsonargparse'] = None\n"  # what a missing package looks like
            "from kerastrainer.cli import main\nsys.exit(main(['fit', '--config', 'x.yaml']))")
    result = _run([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 2
    assert "pip install kerastrainer[cli]" in result.stderr
