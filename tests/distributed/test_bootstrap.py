"""The worker bootstrap of `kerastrainer launch`: the strategy before the script, the script as
`python script.py` would run it; and the error of a worker that made a tensor too early."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kerastrainer.distributed.bootstrap import main
from kerastrainer.distributed.strategies import COLLECTIVE_TIMEOUT_SECONDS, collective_timeout


def _env(**extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def test_the_script_runs_as_main_with_its_arguments_and_folder(tmp_path):
    script = tmp_path / "train.py"
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    script.write_text("import sys, helper\n"
                      "print(__name__, sys.argv[1:], sys.path[0], helper.VALUE)\n")
    result = subprocess.run([sys.executable, "-m", "kerastrainer.distributed.bootstrap",
                             str(script), "--epochs", "3"], capture_output=True, text=True,
                            timeout=120, env=_env(), cwd=os.path.dirname(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["__main__", "['--epochs',", "'3']", str(tmp_path), "7"]


def test_no_script_is_an_error():
    with pytest.raises(ValueError, match=r"needs the script to run.*Received no arguments"):
        main([])


def test_a_worker_that_ran_tensorflow_before_the_trainer_is_told_what_to_move(tmp_path):
    config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
              "task": {"type": "worker", "index": 0}}
    code = ("import tensorflow as tf, kerastrainer as kt\n"
            "tf.constant(1.0)  # data built first\n"
            "kt.Trainer(strategy='multi_worker')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=_env(TF_CONFIG=json.dumps(config)))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: strategy='multi_worker' must be created before "
                           "TensorFlow runs anything"), result.stderr[-2000:]
    assert "kerastrainer launch --nproc N script.py" in last


@pytest.mark.parametrize(("value", "seconds"), [(None, COLLECTIVE_TIMEOUT_SECONDS), ("", 600.0),
                                                 ("12.5", 12.5)])
def test_the_collective_timeout_comes_from_the_environment(monkeypatch, value, seconds):
    if value is None:
        monkeypatch.delenv("KT_COLLECTIVE_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("KT_COLLECTIVE_TIMEOUT", value)
    assert collective_timeout() == seconds


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_collective_timeout_is_named(monkeypatch, value):
    monkeypatch.setenv("KT_COLLECTIVE_TIMEOUT", value)
    with pytest.raises(ValueError, match=rf"^KT_COLLECTIVE_TIMEOUT must be a positive number of "
                                         rf"seconds\. Received: KT_COLLECTIVE_TIMEOUT='{value}'"):
        collective_timeout()
