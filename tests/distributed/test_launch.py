"""``kerastrainer launch``, run as a real process over small plain-Python worker scripts.

Nothing here imports TensorFlow (the autouse fixture of tests/conftest.py does, once).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kerastrainer.distributed.launch import (
    PREEMPTED_EXIT_CODE,
    free_ports,
    launch,
    mark_ready,
    worker_env,
)

# The workers here use no TensorFlow: no strategy is bootstrapped before them.
LAUNCH = [sys.executable, "-m", "kerastrainer.cli", "launch", "--no-bootstrap"]

# every worker script starts with this; the test appends what the worker does
PRELUDE = """\
import json, os, signal, subprocess, sys, time
from pathlib import Path
from kerastrainer.distributed.launch import mark_ready
RANK = int(os.environ["KT_LAUNCH_RANK"])
ATTEMPT = int(os.environ["KT_LAUNCH_ATTEMPT"])
HERE = Path(__file__).parent
"""


def worker_script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "worker.py"
    path.write_text(PRELUDE + textwrap.dedent(body))
    return str(path)


def run_launcher(*args, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run(
        [*LAUNCH, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    return result, time.monotonic() - start


def worker_lines(stdout: str, rank: int) -> list[str]:
    prefix = f"[worker {rank}] "
    return [line[len(prefix):] for line in stdout.splitlines() if line.startswith(prefix)]


def wait_for(paths, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not all(Path(p).exists() for p in paths):
        assert time.monotonic() < end, f"workers never wrote {paths}"
        time.sleep(0.05)


def assert_gone(pid: int, timeout: float = 5) -> None:
    """The process no longer runs (a zombie waiting for init to reap it counts as gone)."""
    end = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return
        if state == "Z":
            return
        assert time.monotonic() < end, f"process {pid} still runs (state {state})"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------- units


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # closed again after choosing: a worker can bind it


def test_free_ports_rejects_a_negative_count():
    with pytest.raises(ValueError, match=r"Received: n=-1"):
        free_ports(-1)


def test_worker_env_describes_the_cluster(tmp_path):
    env = worker_env(1, [2001, 2002, 2003], attempt=2, ready_dir=str(tmp_path), base_env={"A": "b"})
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"worker": ["127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"]},
        "task": {"type": "worker", "index": 1},
    }
    assert env["KT_LAUNCH_RANK"] == "1"
    assert env["KT_LAUNCH_WORLD_SIZE"] == "3"
    assert env["KT_LAUNCH_ATTEMPT"] == "2"
    assert env["KT_LAUNCH_READY_FILE"] == os.path.join(str(tmp_path), "ready.1")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["A"] == "b"
    assert "KT_COLLECTIVE_TIMEOUT" not in env  # the workers' default
    assert worker_env(0, [1, 2], attempt=0, ready_dir=str(tmp_path), base_env={},
                      collective_timeout=30)["KT_COLLECTIVE_TIMEOUT"] == "30.0"


def test_worker_env_extends_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("KT_TEST_MARKER", "kept")
    env = worker_env(0, [2001], attempt=0, ready_dir=str(tmp_path))
    assert env["KT_TEST_MARKER"] == "kept"
    assert "TF_CONFIG" not in os.environ  # a copy: the launcher's own environment is untouched


def test_mark_ready_without_the_launcher_does_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("KT_LAUNCH_READY_FILE", raising=False)
    mark_ready()
    assert list(tmp_path.iterdir()) == []


def test_mark_ready_creates_the_ready_file_once(tmp_path, monkeypatch):
    ready = tmp_path / "ready.0"
    monkeypatch.setenv("KT_LAUNCH_READY_FILE", str(ready))
    mark_ready()
    mark_ready()  # idempotent
    assert [p.name for p in tmp_path.iterdir()] == ["ready.0"]  # no temporary file left behind


def test_mark_ready_after_the_launcher_removed_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KT_LAUNCH_READY_FILE", str(tmp_path / "gone" / "ready.0"))
    mark_ready()  # must not crash a training run


NPROC_ERROR = r"^--nproc must be an integer >= 1\. Received: --nproc=0$"


@pytest.mark.parametrize(
    ("command", "options", "error", "match"),
    [
        (["w.py"], {"nproc": 0}, ValueError, NPROC_ERROR),
        (["w.py"], {"nproc": True}, ValueError, r"Received: --nproc=True"),
        (["w.py"], {"nproc": 1, "max_restarts": -1}, ValueError, r"Received: --max-restarts=-1"),
        (["w.py"], {"nproc": 1, "start_timeout": 0}, ValueError, r"Received: --start-timeout=0"),
        (["w.py"], {"nproc": 1, "kill_grace": -1}, ValueError, r"Received: --kill-grace=-1"),
        (["w.py"], {"nproc": 1, "collective_timeout": 0}, ValueError,
         r"^--collective-timeout must be a finite number of seconds > 0\. Received: "
         r"--collective-timeout=0$"),
        (["w.py"], {"nproc": 1, "collective_timeout": float("inf")}, ValueError,
         r"Received: --collective-timeout=inf"),
        ([], {"nproc": 1}, ValueError, r"Received: command=\[\]"),
        (["missing.py"], {"nproc": 1}, FileNotFoundError, r"Script not found: 'missing\.py'"),
        (["no-such-program-kt"], {"nproc": 1}, FileNotFoundError, r"Program not found"),
    ],
)
def test_launch_rejects_bad_arguments(tmp_path, command, options, error, match):
    (tmp_path / "w.py").write_text("")
    with pytest.raises(error, match=match):
        launch(command, **options)


def test_launch_in_process_writes_prefixed_lines_to_output(tmp_path):
    script = worker_script(tmp_path, 'mark_ready()\nprint("hello", RANK)\n')
    output = io.StringIO()
    assert launch([script], nproc=1, bootstrap=False, output=output) == 0
    assert output.getvalue() == "[worker 0] hello 0\n"


# ------------------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--nproc", "0", "w.py"], ["--nproc", "Received: --nproc=0"]),
        (["--max-restarts", "-1", "w.py"], ["Received: --max-restarts=-1"]),
        (["--start-timeout", "-5", "w.py"], ["Received: --start-timeout=-5"]),
        (["--nproc", "two", "w.py"], ["--nproc", "invalid int value"]),
        ([], ["required: script"]),
        (["missing.py"], ["Script not found: 'missing.py'"]),
    ],
)
def test_cli_argument_errors_exit_2(tmp_path, args, expected):
    (tmp_path / "w.py").write_text("raise SystemExit('must not run')\n")
    result, _ = run_launcher(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr


def test_cli_imports_no_tensorflow(tmp_path):
    script = worker_script(tmp_path, "mark_ready()\n")
    check = (
        "import sys; from kerastrainer.cli import main; "
        f"assert main(['launch', {script!r}]) == 0; "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'imported TensorFlow'"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "entry",
    [LAUNCH, [sys.executable, "-m", "kerastrainer.distributed.launch", "--no-bootstrap"]],
    ids=["cli", "module"],
)
def test_two_workers_get_their_own_tf_config_and_prefixed_output(tmp_path, entry):
    script = worker_script(
        tmp_path,
        """
        mark_ready()
        env = os.environ
        print("CONFIG", env["KT_LAUNCH_WORLD_SIZE"], sys.argv[1:], env["TF_CONFIG"], sep="|")
        for i in range(200):  # many long lines from both workers at once: none may be cut
            print(f"line {i} " + str(RANK) * 300)
        print("to stderr", file=sys.stderr)
        """,
    )
    start = time.monotonic()
    command = [*entry, "--nproc", "2", script, "--epochs", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - start < 30
    ports = []
    for rank in (0, 1):
        lines = worker_lines(result.stdout, rank)
        _, world_size, argv, config = lines[0].split("|")
        config = json.loads(config)
        assert config["task"] == {"type": "worker", "index": rank}
        assert world_size == "2"
        assert argv == "['--epochs', '3']"  # the script's own flags pass through untouched
        ports.append(config["cluster"]["worker"])
        assert lines[1:201] == [f"line {i} " + str(rank) * 300 for i in range(200)]
        assert "to stderr" in lines  # stderr is merged into the same prefixed stream
    assert ports[0] == ports[1]
    hosts = {address.split(":")[0] for address in ports[0]}
    assert hosts == {"127.0.0.1"} and len(set(ports[0])) == 2
    for line in result.stdout.splitlines():
        assert line.startswith(("[worker 0] ", "[worker 1] "))


@pytest.mark.slow
def test_a_failing_worker_stops_a_worker_that_ignores_sigterm(tmp_path):
    script = worker_script(
        tmp_path,
        """
        if RANK == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like a chief blocked in a collective
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            (HERE / "pids.tmp").write_text(f"{os.getpid()} {child.pid}")
            os.replace(HERE / "pids.tmp", HERE / "pids")
            mark_ready()
            while True:
                time.sleep(1)
        deadline = time.monotonic() + 20
        while not (HERE / "pids").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print("worker 1 fails")
        sys.exit(3)
        """,
    )
    result, elapsed = run_launcher("--nproc", "2", script)
    assert result.returncode == 1
    assert elapsed < 30
    assert "[worker 1] worker 1 fails" in result.stdout
    lines = result.stdout.splitlines()
    message = [line for line in lines if line.startswith("kerastrainer launch:")]
    assert len(message) == 1 and "worker 1 (pid " in message[0]
    assert message[0].endswith("exited with code 3")
    for pid in map(int, (tmp_path / "pids").read_text().split()):
        assert_gone(pid)  # the worker and its own child: SIGKILL reached the whole process group


def test_a_worker_killed_by_a_signal_fails_the_job(tmp_path):
    script = worker_script(
        tmp_path,
        """
        mark_ready()
        if RANK == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(600)
        """,
    )
    result, elapsed = run_launcher("--nproc", "2", script)
    assert result.returncode == 1
    assert elapsed < 30
    assert "worker 1 (pid " in result.stdout and "was killed by SIGKILL" in result.stdout


def test_start_up_deadline_names_the_worker_that_never_became_ready(tmp_path):
    script = worker_script(
        tmp_path,
        """
        if RANK == 0:
            mark_ready()
        time.sleep(600)
        """,
    )
    result, elapsed = run_launcher("--nproc", "2", "--start-timeout", "2", script)
    assert result.returncode == 1
    assert elapsed < 10
    assert (
        "kerastrainer launch: worker 1 did not become ready within 2 s "
        "(start-up deadline; see --start-timeout)"
    ) in result.stdout.splitlines()


def test_a_worker_that_finished_counts_as_ready(tmp_path):
    script = worker_script(
        tmp_path,
        """
        if RANK == 0:
            mark_ready()
            time.sleep(2)  # outlives the deadline; worker 1 exits 0 without calling mark_ready
        """,
    )
    result, _ = run_launcher("--nproc", "2", "--start-timeout", "1", script)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("max_restarts", "expected_code"), [(1, 0), (0, 1)])
def test_max_restarts_relaunches_all_workers_with_new_ports(tmp_path, max_restarts, expected_code):
    script = worker_script(
        tmp_path,
        """
        mark_ready()
        print("attempt", ATTEMPT, json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"][0])
        (HERE / f"printed.{RANK}.{ATTEMPT}").touch()
        if ATTEMPT == 0:
            if RANK == 1:
                # fail only once worker 0 has printed, or the launcher may stop it before it does
                while not (HERE / "printed.0.0").exists():
                    time.sleep(0.01)
                sys.exit(5)
            time.sleep(600)
        """,
    )
    result, elapsed = run_launcher("--nproc", "2", "--max-restarts", max_restarts, script)
    assert result.returncode == expected_code, result.stdout
    assert elapsed < 30
    assert "exited with code 5" in result.stdout
    restarted = "kerastrainer launch: restarting all workers (restart 1 of 1)" in result.stdout
    assert restarted == (max_restarts == 1)
    if max_restarts:
        first, second = (line.split() for line in worker_lines(result.stdout, 0))
        assert (first[1], second[1]) == ("0", "1")  # KT_LAUNCH_ATTEMPT counts the restarts
        assert first[2] != second[2]  # fresh ports on every attempt


@pytest.mark.parametrize("codes", [(143, 143), (0, 143)])
def test_preempted_workers_end_the_job_with_143(tmp_path, codes):
    script = worker_script(
        tmp_path,
        f"""
        mark_ready()
        if RANK == 0:
            time.sleep(1)  # the launcher waits for the others after the first preempted worker
        sys.exit({codes}[RANK])
        """,
    )
    result, _ = run_launcher("--nproc", "2", "--max-restarts", "3", script)
    assert result.returncode == PREEMPTED_EXIT_CODE == 143
    assert (
        "kerastrainer launch: preempted (workers saved a checkpoint); relaunch to resume"
        in result.stdout.splitlines()
    )
    assert "restarting" not in result.stdout  # preemption is no failure


@pytest.mark.parametrize(("signum", "expected_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_launcher_is_forwarded_to_the_workers(tmp_path, signum, expected_code):
    script = worker_script(
        tmp_path,
        """
        def stop(signum, frame):
            print("saving and stopping")
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        mark_ready()
        (HERE / f"up.{RANK}").touch()
        time.sleep(600)
        """,
    )
    launcher = subprocess.Popen(
        [*LAUNCH, "--nproc", "2", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for([tmp_path / "up.0", tmp_path / "up.1"])
        launcher.send_signal(signum)
        stdout, _ = launcher.communicate(timeout=30)
    finally:
        launcher.kill()
        launcher.wait(timeout=10)
    assert launcher.returncode == expected_code, stdout
    assert f"kerastrainer launch: received {signal.Signals(signum).name}" in stdout
    for rank in (0, 1):
        assert worker_lines(stdout, rank) == ["saving and stopping"]


def test_workers_still_running_long_after_a_preemption_are_killed(tmp_path, monkeypatch):
    import kerastrainer.distributed.launch as launch_module

    monkeypatch.setattr(launch_module, "_STOP_GRACE", 1.0)  # instead of a minute
    script = worker_script(
        tmp_path,
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        mark_ready()
        if RANK == 1:
            sys.exit(143)
        (HERE / "pid").write_text(str(os.getpid()))
        time.sleep(600)  # never saves: stuck in a collective
        """,
    )
    output = io.StringIO()
    assert launch([script], nproc=2, bootstrap=False, output=output) == PREEMPTED_EXIT_CODE
    assert "kerastrainer launch: killing worker(s) 0: still running 1 s after" in output.getvalue()
    assert_gone(int((tmp_path / "pid").read_text()))


def test_workers_that_ignore_a_forwarded_sigterm_are_killed_after_the_grace(tmp_path):
    script = worker_script(
        tmp_path,
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        mark_ready()
        (HERE / f"up.{RANK}").write_text(str(os.getpid()))
        time.sleep(600)
        """,
    )
    code = (
        "import sys, kerastrainer.distributed.launch as launch; launch._STOP_GRACE = 1.0; "
        f"sys.exit(launch.main(['--nproc', '2', {script!r}]))"
    )
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        wait_for([tmp_path / "up.0", tmp_path / "up.1"])
        launcher.send_signal(signal.SIGTERM)
        stdout, _ = launcher.communicate(timeout=30)
    finally:
        launcher.kill()
        launcher.wait(timeout=10)
    assert launcher.returncode == 143, stdout
    for rank in (0, 1):
        assert_gone(int((tmp_path / f"up.{rank}").read_text()))


def test_a_job_hung_by_a_stopped_peer_blames_that_peer(tmp_path):
    """Worker 1 stops (SIGSTOP); worker 0's collective times out and names task 1, as TensorFlow
    does. The report names the stopped worker, not only the one that exited."""
    script = worker_script(
        tmp_path,
        """
        mark_ready()
        if RANK == 1:
            os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(1)
        print("Collective ops is aborted by: Error reported from /job:worker/task:0: The "
              "following tasks are unhealthy (stopped sending heartbeats): /job:worker/task:1")
        sys.exit(1)
        """,
    )
    result, seconds = run_launcher("--nproc", "2", "--collective-timeout", "5", script)
    assert result.returncode == 1, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("kerastrainer launch:")]
    assert lines[0].startswith("kerastrainer launch: worker 0 (pid ") and "exited with code 1" in lines[0]
    assert any(line.startswith("kerastrainer launch: worker 1 (pid ") and "is stopped" in line
               for line in lines), lines
    assert any("worker 0's error names task(s) 1" in line for line in lines), lines
    assert seconds < 30


def test_a_signal_during_a_hang_says_that_not_every_worker_saved(tmp_path, monkeypatch):
    import threading

    import kerastrainer.distributed.launch as launch_module

    monkeypatch.setattr(launch_module, "_STOP_GRACE", 1.0)  # instead of a minute
    script = worker_script(
        tmp_path,
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stuck in a collective: cannot save
        mark_ready()
        (HERE / f"up.{RANK}").touch()
        time.sleep(600)
        """,
    )
    threading.Thread(target=lambda: (wait_for([tmp_path / "up.0", tmp_path / "up.1"]),
                                     os.kill(os.getpid(), signal.SIGTERM)), daemon=True).start()
    output = io.StringIO()
    assert launch([script], nproc=2, bootstrap=False, output=output) == 143
    assert ("kerastrainer launch: not every worker saved a checkpoint before it stopped (saved: "
            "none)") in output.getvalue()


def test_a_peer_that_never_joined_a_timed_out_collective_is_named(tmp_path):
    """Worker 1 is alive (its heartbeats run, TensorFlow names no task) but never joins; worker 0's
    collective times out. The report names worker 1 as stuck outside the step."""
    script = worker_script(
        tmp_path,
        """
        mark_ready()
        if RANK == 1:
            time.sleep(600)  # a hung input pipeline
        time.sleep(1)
        print("tensorflow.python.framework.errors_impl.DeadlineExceededError: Graph execution error:")
        print("Collective has timed out during execution.")
        sys.exit(1)
        """,
    )
    result, _ = run_launcher("--nproc", "2", script)
    assert result.returncode == 1, result.stdout
    assert ("never joined the collective that worker 0 timed out in: it is stuck outside the "
            "training step") in result.stdout, result.stdout
    assert "worker 1 (pid " in result.stdout.split("never joined")[0].rsplit("\n", 1)[-1]
