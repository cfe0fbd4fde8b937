"""``kerastrainer launch``: runs N workers of a MultiWorkerMirroredStrategy job on this host.

Like ``torchrun``: each worker gets its own ``TF_CONFIG`` (a cluster of N ``127.0.0.1`` ports), its
output is prefixed with ``[worker R] ``, and one failing worker stops the whole job (or restarts it,
``--max-restarts``), because the others would otherwise wait forever in a collective.

Standard library only, so the launcher never imports TensorFlow. POSIX only (process groups).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

#: Exit code of a worker that saved a checkpoint after SIGTERM (128 + SIGTERM), and of the launcher
#: when the job was preempted: relaunching it resumes from that checkpoint.
PREEMPTED_EXIT_CODE = 143

_STOP_GRACE = 60.0  # seconds workers get to save and exit after a preemption or a forwarded signal
_POLL = 0.05
_PREFIX = "kerastrainer launch: "


def free_ports(n: int) -> list[int]:
    """Picks ``n`` distinct free TCP ports on ``127.0.0.1``.

    Every socket stays bound until all ports are chosen, so the ports are distinct. Another process
    may still take one before a worker binds it; that worker fails and ``--max-restarts`` retries
    with new ports.

    Args:
        n: How many ports.

    Returns:
        The port numbers.

    Raises:
        ValueError: If ``n`` is not an integer >= 0.

    Examples:
        >>> len(set(free_ports(2)))
        2
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"`n` must be an integer >= 0. Received: n={n!r}")
    sockets = []
    try:
        for _ in range(n):
            sockets.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sockets[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_env(rank: int, ports: list[int], *, attempt: int, ready_dir: str, base_env=None) -> dict:
    """The environment of worker ``rank``.

    Args:
        rank: The worker's index in the cluster (0 is the chief).
        ports: One port per worker; ``len(ports)`` is the world size.
        attempt: How many times the job was restarted before (0 on the first start).
        ready_dir: The folder where the worker signals readiness (see `mark_ready`).
        base_env: The environment to extend (default: a copy of ``os.environ``).

    Returns:
        A new dict with ``TF_CONFIG``, ``KT_LAUNCH_RANK``, ``KT_LAUNCH_WORLD_SIZE``,
        ``KT_LAUNCH_ATTEMPT``, ``KT_LAUNCH_READY_FILE`` and ``PYTHONUNBUFFERED=1`` set.

    Examples:
        >>> env = worker_env(1, [2222, 2223], attempt=0, ready_dir="/tmp/r", base_env={})
        >>> json.loads(env["TF_CONFIG"])["task"]
        {'type': 'worker', 'index': 1}
    """
    env = dict(os.environ if base_env is None else base_env)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})
    env["KT_LAUNCH_RANK"] = str(rank)
    env["KT_LAUNCH_WORLD_SIZE"] = str(len(ports))
    env["KT_LAUNCH_ATTEMPT"] = str(attempt)
    env["KT_LAUNCH_READY_FILE"] = os.path.join(ready_dir, f"ready.{rank}")
    env["PYTHONUNBUFFERED"] = "1"  # output reaches the launcher, and the user, line by line
    return env


def mark_ready() -> None:
    """Tells the launcher that this worker has started (its distributed strategy has connected).

    Creates the file named by ``KT_LAUNCH_READY_FILE``; does nothing outside ``kerastrainer
    launch``. Cheap and idempotent, so it may be called at every ``fit``.

    Examples:
        >>> mark_ready()  # a no-op unless started by kerastrainer launch
    """
    path = os.environ.get("KT_LAUNCH_READY_FILE")
    if not path or os.path.exists(path):
        return
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as file:
            file.write(str(os.getpid()))
        os.replace(temporary, path)  # the launcher never sees a half-written file
    except FileNotFoundError:
        pass  # the ready folder is gone: the launcher has stopped watching, training goes on


@dataclass
class _Worker:
    rank: int
    proc: subprocess.Popen
    reader: threading.Thread


class _Printer:
    """Writes whole lines from several threads; the lock keeps lines from interleaving."""

    def __init__(self, output) -> None:
        self.output, self.lock = output, threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            try:
                self.output.write(text + "\n")
                self.output.flush()
            except (OSError, ValueError):
                pass  # a closed output must not stop the draining of pipes (workers would block)

    def say(self, message: str) -> None:
        self.line(_PREFIX + message)

    def stream(self, rank: int, pipe) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                self.line(f"[worker {rank}] " + raw.decode(errors="replace").rstrip("\r\n"))


def _describe(worker: _Worker) -> str:
    code, how = worker.proc.returncode, f"exited with code {worker.proc.returncode}"
    if code < 0:  # Popen's way of saying "killed by signal -code"
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # real-time signals have no name
            how = f"was killed by signal {-code}"
    return f"worker {worker.rank} (pid {worker.proc.pid}) {how}"


def _signal_groups(workers, signum) -> None:
    for worker in workers:
        try:  # the whole group, so the worker's own children go too
            os.killpg(worker.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _terminate(workers, grace: float) -> None:
    """SIGTERM, up to ``grace`` s, SIGKILL: a worker blocked in a collective ignores SIGTERM."""
    alive = [w for w in workers if w.proc.poll() is None]
    if alive and grace > 0:
        _signal_groups(alive, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end and any(w.proc.poll() is None for w in alive):
            time.sleep(_POLL)
    _signal_groups(workers, signal.SIGKILL)  # also whatever exited workers left in their group
    for worker in workers:
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _supervise(workers, ready_dir, start_timeout, kill_grace, printer, received):
    """Watches one attempt until it ends. Returns ``(exit code, whether a restart may help)``."""
    deadline, ready = time.monotonic() + start_timeout, set()
    forwarded_at = preempted_at = None
    while True:
        time.sleep(_POLL)
        now, codes = time.monotonic(), [w.proc.poll() for w in workers]
        if received:  # the launcher got SIGTERM/SIGINT: let the workers save, then end
            if forwarded_at is None:
                printer.say(f"received {signal.Signals(received[0]).name}; stopping the workers")
                _signal_groups(workers, signal.SIGTERM)
                forwarded_at = now
            if None not in codes or len(received) > 1 or now > forwarded_at + _STOP_GRACE:
                _terminate(workers, grace=0)  # a second signal, or the grace is over: no waiting
                return 128 + received[0], False
            continue
        failed = [w for w, c in zip(workers, codes) if c not in (None, 0, PREEMPTED_EXIT_CODE)]
        if failed:
            for worker in failed:
                worker.reader.join(timeout=1)  # its last lines (a traceback) before our message
                printer.say(_describe(worker))
            _terminate(workers, kill_grace)
            return 1, True
        if PREEMPTED_EXIT_CODE in codes:  # the others are saving too; wait for them, not forever
            preempted_at = now if preempted_at is None else preempted_at
            if None not in codes or now > preempted_at + _STOP_GRACE:
                if None in codes:
                    late = ", ".join(str(w.rank) for w, c in zip(workers, codes) if c is None)
                    printer.say(f"killing worker(s) {late}: still running {_STOP_GRACE:g} s after "
                                "the preemption")
                    _terminate(workers, grace=0)
                printer.say("preempted (workers saved a checkpoint); relaunch to resume")
                return PREEMPTED_EXIT_CODE, False
        elif None not in codes:
            return 0, False
        for worker, code in zip(workers, codes):  # a worker that exited without failing was ready
            if worker.rank not in ready and (
                code is not None or os.path.exists(os.path.join(ready_dir, f"ready.{worker.rank}"))
            ):
                ready.add(worker.rank)
        if len(ready) < len(workers) and now > deadline:
            late = [str(w.rank) for w in workers if w.rank not in ready]
            printer.say(
                f"worker{'s' * (len(late) > 1)} {', '.join(late)} did not become ready within "
                f"{start_timeout:g} s (start-up deadline; see --start-timeout)"
            )
            _terminate(workers, kill_grace)
            return 1, False


def _attempt(argv, nproc, attempt, start_timeout, kill_grace, printer, received):
    ready_dir, workers = tempfile.mkdtemp(prefix="kt-launch-"), []
    try:
        ports = free_ports(nproc)  # new ports on every attempt: the old ones may still be held
        for rank in range(nproc):
            proc = subprocess.Popen(
                argv,
                env=worker_env(rank, ports, attempt=attempt, ready_dir=ready_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches its children
            )
            reader = threading.Thread(target=printer.stream, args=(rank, proc.stdout), daemon=True)
            reader.start()
            workers.append(_Worker(rank, proc, reader))
        return _supervise(workers, ready_dir, start_timeout, kill_grace, printer, received)
    finally:
        _terminate(workers, grace=0)  # normally a no-op; after an exception no worker may be left
        for worker in workers:
            worker.reader.join(timeout=5)
        shutil.rmtree(ready_dir, ignore_errors=True)


def _check(flag: str, value, ok: bool, rule: str) -> None:
    if not ok or isinstance(value, bool):
        raise ValueError(f"--{flag} must be {rule}. Received: --{flag}={value!r}")


def _check_launch(command, nproc, max_restarts, start_timeout, kill_grace) -> list:
    """Checks `launch`'s arguments; returns the worker's argv."""
    if not command:
        raise ValueError("The command must name a script, e.g. `kerastrainer launch --nproc 2 "
                         "train.py`. Received: command=[]")
    _check("nproc", nproc, isinstance(nproc, int) and nproc >= 1, "an integer >= 1")
    ok = isinstance(max_restarts, int) and max_restarts >= 0
    _check("max-restarts", max_restarts, ok, "an integer >= 0")
    ok = isinstance(start_timeout, (int, float)) and start_timeout > 0  # also rejects NaN
    _check("start-timeout", start_timeout, ok, "a number of seconds > 0")
    ok = isinstance(kill_grace, (int, float)) and kill_grace >= 0
    _check("kill-grace", kill_grace, ok, "a number of seconds >= 0")
    if command[0].endswith(".py") and not os.path.isfile(command[0]):
        raise FileNotFoundError(f"Script not found: {command[0]!r}. Pass the path of the training "
                                "script, relative to the current folder.")
    if not command[0].endswith(".py") and shutil.which(command[0]) is None:
        raise FileNotFoundError(f"Program not found: {command[0]!r}. Pass a .py script or a "
                                "program on the PATH.")
    return [sys.executable, *command] if command[0].endswith(".py") else command


def launch(command, *, nproc: int, max_restarts: int = 0, start_timeout: float = 300.0,
           kill_grace: float = 5.0, output=None) -> int:
    """Runs ``nproc`` workers of ``command`` and supervises them until the job ends.

    Args:
        command: The worker command; a first item ending in ``.py`` runs with this Python.
        nproc: How many workers.
        max_restarts: How many times to restart all workers after one fails.
        start_timeout: Seconds within which every worker must call `mark_ready`.
        kill_grace: Seconds between SIGTERM and SIGKILL when stopping workers after a failure.
        output: Where the workers' prefixed lines and the launcher's messages go (default: the
            ``sys.stdout`` of the moment of the call).

    Returns:
        0 when all workers succeeded; 143 when the job was preempted or the launcher got SIGTERM;
        130 after SIGINT; 1 after a worker failure or a missed start-up deadline.

    Raises:
        ValueError: If an argument is out of range or ``command`` is empty.
        FileNotFoundError: If the script or program does not exist.

    Examples:
        >>> launch(["train.py", "--epochs", "3"], nproc=2, max_restarts=1)  # doctest: +SKIP
    """
    argv = _check_launch(list(command), nproc, max_restarts, start_timeout, kill_grace)
    printer, received, previous = _Printer(output or sys.stdout), [], {}
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        for signum in (signal.SIGTERM, signal.SIGINT):  # recorded; _supervise forwards it
            previous[signum] = signal.signal(signum, lambda number, _: received.append(number))
    try:
        for attempt in range(max_restarts + 1):
            if attempt:
                printer.say(f"restarting all workers (restart {attempt} of {max_restarts})")
            code, restartable = _attempt(
                argv, nproc, attempt, start_timeout, kill_grace, printer, received
            )
            if received:
                return 128 + received[0]
            if not restartable:
                return code
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ``launch`` options, the script and the script's own arguments to ``parser``."""
    parser.add_argument("--nproc", type=int, default=1, metavar="N", help="workers (default: 1)")
    parser.add_argument("--max-restarts", type=int, default=0, metavar="K",
                        help="restart all workers up to K times after a failure (default: 0)")
    parser.add_argument("--start-timeout", type=float, default=300.0, metavar="S",
                        help="seconds for every worker to become ready (default: 300)")
    parser.add_argument("script", help="the training script (or a program on the PATH)")
    rest = parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="...",
                               help="the script's own arguments, passed through untouched")
    rest.required = False  # a script without arguments is fine; argparse would call it missing
    return parser


def run_parsed(args: argparse.Namespace) -> int:
    """Runs `launch` with the arguments of `add_arguments`; 2 on a bad argument."""
    try:
        return launch([args.script, *args.script_args], nproc=args.nproc,
                      max_restarts=args.max_restarts, start_timeout=args.start_timeout)
    except (ValueError, FileNotFoundError) as error:
        print(_PREFIX + str(error), file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """``python -m kerastrainer.distributed.launch [--nproc N] ... script.py [args...]``."""
    parser = argparse.ArgumentParser(prog="kerastrainer launch", description=__doc__.split("\n")[0])
    return run_parsed(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
