"""MirroredStrategy over two logical CPU devices, in a subprocess (see mirrored_run.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# one worker runs the module, so that its module-scoped fixture (a multi-process run) runs once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mirrored")]


@pytest.fixture(scope="module")
def runs():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "tests.distributed.mirrored_run"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize(("data", "feed"), [("arrays", "memory"), ("dataset", "iterator")])
def test_mirrored_matches_one_device(runs, data, feed):
    one, two = runs[f"one_device/{data}"], runs[f"mirrored/{data}"]
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["steps"] == two["steps"] == 3 * 11  # 331 rows, global batch 32
    assert one["feeds"] == two["feeds"] == [feed]  # arrays stay in memory under Mirrored too
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=1e-5)
    assert two["jit"] == "2 replicas: XLA is not used"


@pytest.mark.parametrize("data", ["arrays", "dataset"])
def test_a_replica_with_an_empty_share_of_the_last_batch_adds_nothing(runs, data):
    # 33 rows, global batch 32: the second batch has one row, so one replica gets no rows
    one, two = runs[f"one_device/{data}/33"], runs[f"mirrored/{data}/33"]
    assert one["steps"] == two["steps"] == 3 * 2
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=1e-5)
    for key in ("loss", "val_loss", "replica_mean"):
        assert np.isfinite(two["metrics"][key]), key
    assert two["metrics"]["loss"] == pytest.approx(one["metrics"]["loss"], abs=1e-5)
    assert two["metrics"]["val_rows"] == 33.0


@pytest.mark.parametrize("data", ["arrays", "dataset"])
def test_logged_values_combine_over_replicas_with_their_reduce_fx(runs, data):
    one, two = runs[f"one_device/{data}"]["metrics"], runs[f"mirrored/{data}"]["metrics"]
    # the replica id is logged: 0 on one device; 0 and 1 under Mirrored
    assert {fx: one[f"replica_{fx}"] for fx in ("max", "min", "sum", "mean")} == {
        "max": 0.0, "min": 0.0, "sum": 0.0, "mean": 0.0}
    assert {fx: two[f"replica_{fx}"] for fx in ("max", "min", "sum", "mean")} == {
        "max": 1.0, "min": 0.0, "sum": 1.0, "mean": 0.5}
    assert one["val_rows"] == two["val_rows"] == 75.0  # every validation row counted once
    assert (one["val_rows_max"], two["val_rows_max"]) == (32.0, 16.0)  # a replica's largest share
    assert two["val_loss"] == pytest.approx(one["val_loss"], abs=1e-5)


def test_jit_compile_true_warns_that_replicas_run_without_xla(runs):
    (message,) = runs["xla_warnings"]
    assert message.startswith("jit_compile=True is ignored under a strategy of 2 replicas")


def test_several_validation_sets_give_each_its_own_values_over_replicas(runs):
    one, two = runs["one_device/several"]["metrics"], runs["mirrored/several"]["metrics"]
    keys = {"val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1", "val_rows/dataloader_idx_1"}
    assert keys <= set(one) and set(one) == set(two)
    assert one["val_rows/dataloader_idx_1"] == two["val_rows/dataloader_idx_1"] == 75.0  # all rows, once
    for key in keys:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5)
    assert one["val_loss/dataloader_idx_1"] > one["val_loss/dataloader_idx_0"]  # targets doubled
