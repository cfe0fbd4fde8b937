"""MultiWorkerMirrored for real: two local worker processes through `kerastrainer launch`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "multi_worker.py"
# one worker runs the module, so that its module-scoped fixture (a multi-process run) runs once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multi_worker")]


def _env(scratch: Path) -> dict:
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(scratch))
    env.pop("TF_CONFIG", None)
    return env


def _launch(out: Path, *args, restarts=0, scratch=None, options=()):
    command = [sys.executable, "-m", "kerastrainer.cli", "launch", "--nproc", "2",
               "--start-timeout", "120", "--max-restarts", str(restarts), *options, str(SCRIPT),
               str(out), *args]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=_env(scratch or out.parent / "scratch"))
    return result, time.monotonic() - start


def _weights(out: Path, rank: int) -> list:
    with np.load(out / f"weights-{rank}.npz") as arrays:
        return [arrays[key] for key in sorted(arrays.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("mw") / "plain"
    scratch = out.parent / "scratch"
    result, _ = _launch(out, scratch=scratch)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, scratch, result.stdout


def test_workers_agree_with_each_other_and_with_one_device(uninterrupted, tmp_path, run_example):
    out, scratch, stdout = uninterrupted
    assert "rank 0 of 2 replicas: 40 steps" in stdout and "rank 1 of 2 replicas: 40 steps" in stdout
    # 64 validation rows, split between the workers: sync_dist=True adds them up
    assert stdout.count("validation rows: 64 in all, 32 here; highest replica id 1") == 2, stdout
    for a, b in zip(_weights(out, 0), _weights(out, 1)):
        np.testing.assert_array_equal(a, b)  # bitwise identical workers
    single = tmp_path / "single"  # without TF_CONFIG: one device, in this process
    with pytest.warns(UserWarning, match="found no last checkpoint"):  # ckpt_path="last", fresh
        printed = run_example("multi_worker.py", str(single))
    assert "rank 0 of 1 replicas: 40 steps" in printed
    assert "validation rows: 64 in all, 64 here; highest replica id 0" in printed
    for a, b in zip(_weights(out, 0), _weights(single, 0)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)  # same global batches


def test_only_the_chief_writes_files(uninterrupted):
    out, scratch, _ = uninterrupted
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    logs = [f for f in files if f.startswith("kt_logs/")]
    assert logs and all(f.startswith("kt_logs/version_0/") for f in logs)  # one run folder
    assert {"checkpoints/last.ckpt", "weights-0.npz", "weights-1.npz"} <= set(files)
    # save_top_k=1: the chief alone removed the older files (both workers did, racing, #14.1)
    assert [f for f in files if f.startswith("checkpoints/")] == [
        "checkpoints/epoch=3-step=40.ckpt", "checkpoints/last.ckpt"]
    assert not [f for f in files if ".tmp" in f]
    assert list(scratch.iterdir()) == []  # the other worker's checkpoint copies were removed


def test_a_killed_worker_stops_the_job_or_restarts_it_exactly(uninterrupted, tmp_path):
    failed, seconds = _launch(tmp_path / "failed", "--crash", "kill")
    assert failed.returncode == 1 and seconds < 30 + 30  # start-up plus the 30 s promise
    assert "worker 1" in failed.stdout and "killed by SIGKILL" in failed.stdout
    restarted, _ = _launch(tmp_path / "restarted", "--crash", "kill", restarts=1)
    assert restarted.returncode == 0, restarted.stdout[-3000:]
    assert "restarting all workers (restart 1 of 1)" in restarted.stdout
    for a, b in zip(_weights(uninterrupted[0], 0), _weights(tmp_path / "restarted", 0)):
        np.testing.assert_array_equal(a, b)


def test_sigterm_to_one_worker_saves_on_both_and_relaunch_resumes_exactly(uninterrupted,
                                                                          tmp_path):
    out = tmp_path / "preempted"
    preempted, _ = _launch(out, "--crash", "term")
    assert preempted.returncode == 143, preempted.stdout[-3000:]
    assert "preempted (workers saved a checkpoint)" in preempted.stdout
    assert (out / "checkpoints" / "last.ckpt").exists() and not (out / "weights-0.npz").exists()
    resumed, _ = _launch(out)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "found no last checkpoint" not in resumed.stdout
    for a, b in zip(_weights(uninterrupted[0], 0), _weights(out, 0)):
        np.testing.assert_array_equal(a, b)


def test_a_stalled_worker_is_named_after_the_collective_timeout(tmp_path):
    """Worker 1 stops (SIGSTOP) at step 25: worker 0's next collective times out after
    --collective-timeout seconds, and the launcher names worker 1, not only worker 0's exit."""
    result, seconds = _launch(tmp_path / "stalled", "--crash", "stop",
                              options=("--collective-timeout", "15"))
    assert result.returncode == 1, result.stdout[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("kerastrainer launch:")]
    assert any("worker 1 (pid" in line and "is stopped" in line for line in lines), lines
    assert seconds < 15 + 120, seconds  # start-up, 25 steps, the timeout; not the 600 s default
