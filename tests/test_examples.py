"""Every example runs as a real script, with a tiny setting: as ``__main__`` in this test process
(``runpy``, the interpreter's own way to run a file), so that each one does not pay again for
importing TensorFlow and tracing kerastrainer's steps (about 7 s of CPU a script on 2 cores). Scripts
that must configure TensorFlow before it starts run in a subprocess."""

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_in_subprocess(script, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                            text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    # resume.py runs in tests/test_checkpoint.py (four crash/resume variants), multi_worker.py in
    # tests/distributed/test_multi_worker.py
    assert scripts == {"digits.py", "new_model.py", "linear_map.py", "mlp_layer.py", "my_model.py",
                       "linear_regression.py", "resume.py", "image_folder.py",
                       "gan.py", "mirrored.py", "multi_worker.py", "functional.py", "tuning.py",
                       "tracking.py", "predict_to_disk.py", "pydataset.py", "several_val_sets.py",
                       "endpoint_layer.py"}


@pytest.mark.parametrize("script", ["new_model.py", "mlp_layer.py", "my_model.py"])
def test_course_classifiers_run(script, run_example):
    out = run_example(script, "--epochs", "2")
    assert "Epoch 2/2" in out and "test_acc" in out


def test_linear_map_recovers_the_weights(run_example):
    out = run_example("linear_map.py", "--epochs", "10")
    assert float(re.search(r"max error: ([0-9.]+)", out).group(1)) < 0.05


def test_linear_regression_recovers_m_and_b(run_example):
    out = run_example("linear_regression.py", "--epochs", "15")
    m, b = map(float, re.search(r"m = ([-0-9.]+) .* b = ([-0-9.]+)", out).groups())
    assert abs(m - 2.0) < 0.1 and abs(b - 0.5) < 0.05


def test_demo_reaches_the_promised_test_accuracy(run_example):
    out = run_example("digits.py")
    assert "Total params" in out  # the model summary comes first
    assert out.index("Total params") < out.index("Epoch 1/")
    curves = re.search(r"Training curves: (\S+)", out).group(1)
    assert curves.endswith("kt_logs/version_0/curves.png") and os.path.getsize(curves) > 20_000
    accuracy = float(re.search(r"Final test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy > 0.95
    assert re.search(r"Training took [0-9.]+ s \([0-9.]+ s of it validating\)", out)
    assert out.rstrip().splitlines()[-1].startswith("Final test accuracy")


def test_tuning_finds_a_rate_that_trains(tmp_path, run_example):
    out = run_example("tuning.py", "--epochs", "3", "--plot", str(tmp_path / "lr.png"))
    rate = float(re.search(r"Suggested learning rate: ([0-9.e+-]+)", out).group(1))
    assert 1e-3 < rate < 1e-1  # the steep part of the digits curve (docs/tuning.md)
    assert float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1)) > 0.9
    assert (tmp_path / "lr.png").stat().st_size > 10_000


def test_tracking_logs_to_mlflow_and_wandb(tmp_path, run_example):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    out = run_example("tracking.py", "--epochs", "2", "--root", str(tmp_path))
    assert re.search(r"MLflow run \w+: FINISHED, params \['dropout', 'hidden', 'lr'\]", out)
    assert len(re.findall(r"\(\d+, [0-9.]+\)", out.split("val_acc by step:")[1].splitlines()[0])) == 2
    best = re.search(r"Best checkpoint: \S+/(epoch=\S+\.ckpt)", out).group(1)
    assert f"checkpoints/{best}" in out.split("MLflow artifacts:")[1].splitlines()[0]
    assert glob.glob(str(tmp_path / "digits" / "version_0" / "wandb" / "offline-run-*" / "run-*.wandb"))


def test_predictions_streamed_to_disk(tmp_path, run_example):
    out = run_example("predict_to_disk.py", "--epochs", "2", "--out", str(tmp_path))
    assert re.search(r"predict returned None; 5 files, 270 rows", out)  # 270 test digits, 64 a batch
    assert float(re.search(r"Test accuracy from the files: ([0-9.]+)", out).group(1)) > 0.8


def test_pydataset_reads_files_with_workers(run_example):
    out = run_example("pydataset.py", "--epochs", "3")
    assert re.search(r"40 batch files, workers=4: [0-9.]+ s per epoch", out)
    assert "on_epoch_end calls: 3" in out
    assert float(re.search(r"Test accuracy: ([0-9.]+)", out).group(1)) > 0.8


def test_image_folder_example(tmp_path, run_example):
    out = run_example("image_folder.py", "--epochs", "2", "--rows", "300", "--cache-dir", str(tmp_path))
    assert os.path.isdir(tmp_path / "digits-png-300" / "train" / "9")
    assert "Test accuracy of the best checkpoint" in out


def test_gan_losses_move_and_the_generator_learns(run_example):
    out = run_example("gan.py", "--epochs", "20")
    epochs = re.findall(r"Epoch \d+/20 .*d_loss: ([0-9.]+) g_loss: ([0-9.]+)", out)
    assert len(epochs) == 20 and epochs[0] != epochs[-1]
    before, after = map(float, re.search(r"data mean: ([0-9.]+) -> ([0-9.]+)", out).groups())
    assert after < before


def test_mirrored_over_two_devices_matches_one_device():
    # two logical CPU devices must be configured before TensorFlow starts: a process of its own
    out = _run_in_subprocess("mirrored.py")
    assert re.search(r"replicas: 1 vs 2; optimizer steps: (\d+) vs \1", out), out
    difference = float(re.search(r"mirrored vs single device: ([-0-9.e+]+)", out).group(1))
    assert difference < 1e-5


def test_functional_model_trains_without_a_subclass(run_example):
    out = run_example("functional.py", "--epochs", "20")
    last = out.rstrip().splitlines()[-1]
    accuracy = float(re.search(r"val_department_accuracy: ([0-9.]+)", last).group(1))
    assert accuracy > 0.5 and "checkpoint rebuilds it: True" in last


def test_several_validation_sets_are_reported_apart(run_example):
    out = run_example("several_val_sets.py", "--epochs", "2")
    clean, noisy = map(float, re.search(r"epoch 2: clean ([0-9.]+)  noisy ([0-9.]+)", out).groups())
    assert noisy < clean  # the noisy copy is harder: the two sets were not mixed up or merged
    assert re.search(r"best clean accuracy [0-9.]+ in epoch=\d", out)


def test_an_endpoint_layer_model_trains_as_fit_trains_it(run_example):
    out = run_example("endpoint_layer.py", "--epochs", "3")
    assert "same as Model.fit: True" in out
    losses = [float(v) for v in re.search(r"kerastrainer loss per epoch: (.*)", out).group(1).split()]
    assert losses[-1] < losses[0]
