"""Multi-node launch: the nodes meet at a coordinator (threads and processes on loopback, and a
simulated SLURM job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from kerastrainer.distributed.rendezvous import (DEFAULT_PORT, Nodes, expand_nodelist,
                                                 parse_coordinator, rendezvous)
from kerastrainer.distributed.workers import free_ports

LAUNCH = [sys.executable, "-m", "kerastrainer.cli", "launch"]
SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "multi_worker.py"


@pytest.mark.parametrize(("text", "expected"), [("node01:29500", ("node01", 29500)),
                                                ("127.0.0.1:1", ("127.0.0.1", 1)),
                                                ("[::1]:2000", ("::1", 2000))])
def test_coordinator_addresses(text, expected):
    assert parse_coordinator(text) == expected


@pytest.mark.parametrize("text", ["node01", "node01:0", "node01:70000", ":12", 5, None])
def test_a_bad_coordinator_is_named(text):
    with pytest.raises(ValueError, match=r"^--coordinator must be HOST:PORT.*Received: "
                                         rf"--coordinator={text!r}"):
        parse_coordinator(text)


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("localhost", ["localhost"]),
    ("gpu[07-09]", ["gpu07", "gpu08", "gpu09"]),
    ("gpu[01-02,05],cpu3", ["gpu01", "gpu02", "gpu05", "cpu3"]),
    ("a1,b[8-10]", ["a1", "b8", "b9", "b10"]),
])
def test_slurm_node_lists_expand(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize(("options", "match"), [
    ((0, 0, "h:1"), r"^--nnodes must be an integer >= 1\. Received: --nnodes=0"),
    ((2, 2, "h:1"), r"^--node-rank must be an integer in \[0, 1\].*Received: --node-rank=2"),
    ((2, None, "h:1"), r"Received: --node-rank=None"),
    ((2, 1, None), r"^--coordinator must be HOST:PORT"),
])
def test_bad_node_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        Nodes.from_options(*options)


def test_one_node_and_no_slurm_is_a_local_job(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert Nodes.from_options(None, None, None) is None
    assert Nodes.from_options(1, 0, None) is None


def test_slurm_gives_the_nodes():
    env = {"SLURM_JOB_ID": "1", "SLURM_NNODES": "3", "SLURM_NODEID": "2",
           "SLURM_JOB_NODELIST": "gpu[01-03]", "KT_COORDINATOR_PORT": "4000"}
    assert Nodes.from_slurm(env) == Nodes(3, 2, "gpu01", 4000)
    assert Nodes.from_slurm({**env, "SLURM_NNODES": "1"}) is None
    assert Nodes.from_slurm({"SLURM_JOB_ID": "1", "SLURM_NNODES": "2", "SLURM_NODEID": "0",
                             "SLURM_JOB_NODELIST": "n1,n2"}).port == DEFAULT_PORT


def _meet(count, ports_of, ranks=None, timeout=20.0):
    port = free_ports(1)[0]
    results, threads = {}, []

    def node(rank):
        try:
            results[rank] = rendezvous(Nodes(count, rank, "127.0.0.1", port), ports_of(rank),
                                       timeout)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            results[rank] = error

    for rank in range(count) if ranks is None else ranks:
        threads.append(threading.Thread(target=node, args=(rank,)))
        threads[-1].start()
    for thread in threads:
        thread.join(timeout + 10)
    return results


def test_every_node_gets_every_address_in_rank_order():
    results = _meet(3, lambda rank: [1000 + 10 * rank, 1001 + 10 * rank])
    expected = ["127.0.0.1:1000", "127.0.0.1:1001", "127.0.0.1:1010", "127.0.0.1:1011",
                "127.0.0.1:1020", "127.0.0.1:1021"]
    assert results == {0: expected, 1: expected, 2: expected}


def test_nodes_with_another_nproc_are_refused():
    results = _meet(2, lambda rank: [1000] * (rank + 1))
    assert all(isinstance(r, ValueError) for r in results.values()), results
    assert "node 1 runs --nproc 2 but node 0 runs --nproc 1" in str(results[0])
    assert str(results[1]) == str(results[0])


def test_a_node_that_never_joins_is_named():
    results = _meet(3, lambda rank: [1000], ranks=[0], timeout=1.0)
    assert isinstance(results[0], TimeoutError)
    assert str(results[0]).startswith("node(s) 1, 2 did not join the coordinator at port")


def _worker(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text("import json, os\nfrom kerastrainer.distributed.workers import mark_ready\n"
                      "mark_ready()\nprint(os.environ['KT_LAUNCH_WORLD_SIZE'], "
                      "os.environ['TF_CONFIG'])\n")
    return str(script)


def _configs(results):
    configs = []
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        line = next(line for line in result.stdout.splitlines() if line.startswith("[worker"))
        rank, rest = line.split("] ", 1)
        size, config = rest.split(" ", 1)
        configs.append((int(rank.split()[1]), int(size), json.loads(config)))
    return configs


def _two_launchers(args_of, env_of):
    procs = [subprocess.Popen([*LAUNCH, *args_of(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env_of(rank))
             for rank in (0, 1)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def _check_one_cluster(configs):
    (rank0, size0, config0), (rank1, size1, config1) = configs
    assert (rank0, rank1, size0, size1) == (0, 1, 2, 2)
    assert config0["cluster"] == config1["cluster"] and len(config0["cluster"]["worker"]) == 2
    assert (config0["task"]["index"], config1["task"]["index"]) == (0, 1)


def test_two_nodes_on_loopback_form_one_cluster(tmp_path):
    port, script = free_ports(1)[0], _worker(tmp_path)
    results = _two_launchers(
        lambda rank: ["--nnodes", "2", "--node-rank", str(rank), "--coordinator",
                      f"127.0.0.1:{port}", "--no-bootstrap", script],
        lambda rank: {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
    _check_one_cluster(_configs(results))
    assert "kerastrainer launch: node 1 of 2: meeting the other nodes at 127.0.0.1:" in \
        results[1].stdout


def test_a_simulated_slurm_job_needs_no_node_options(tmp_path):
    port, script = free_ports(1)[0], _worker(tmp_path)
    results = _two_launchers(
        lambda rank: ["--no-bootstrap", script],
        lambda rank: dict(os.environ, SLURM_JOB_ID="42", SLURM_NNODES="2", SLURM_NODEID=str(rank),
                          SLURM_JOB_NODELIST="localhost", KT_COORDINATOR_PORT=str(port)))
    _check_one_cluster(_configs(results))


def test_restarts_are_refused_over_several_nodes(tmp_path):
    result = subprocess.run([*LAUNCH, "--nnodes", "2", "--node-rank", "0", "--coordinator",
                             "127.0.0.1:1", "--max-restarts", "1", _worker(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--max-restarts needs a job on one node" in result.stderr


@pytest.mark.slow
def test_training_over_two_nodes_gives_identical_workers(tmp_path):
    port = free_ports(1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp_path))
    out = tmp_path / "out"
    results = _two_launchers(
        lambda rank: ["--nnodes", "2", "--node-rank", str(rank), "--coordinator",
                      f"127.0.0.1:{port}", "--start-timeout", "120", str(SCRIPT), str(out)],
        lambda rank: env)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 1 of 2 replicas: 40 steps" in results[1].stdout
    weights = [np.load(out / f"weights-{rank}.npz") for rank in (0, 1)]
    for key in weights[0].files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])
