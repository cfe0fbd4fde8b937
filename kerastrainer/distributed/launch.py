"""``kerastrainer launch``: runs N workers of a MultiWorkerMirroredStrategy job on this host.

Like ``torchrun``: each worker gets its own ``TF_CONFIG`` (a cluster of N ``127.0.0.1`` ports), its
output is prefixed with ``[worker R] ``, and one failing worker stops the whole job (or restarts it,
``--max-restarts``), because the others would otherwise wait forever in a collective. Over several
hosts the same command runs on each (``--nnodes``, ``--node-rank``, ``--coordinator``, or SLURM's
environment; see `kerastrainer.distributed.rendezvous`).

Standard library only, so the launcher never imports TensorFlow. POSIX only (process groups).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from kerastrainer.distributed.reports import describe, suspects
from kerastrainer.distributed.rendezvous import Nodes, rendezvous
# The workers' side of the contract; mark_ready is public here too (it always was).
from kerastrainer.distributed.workers import free_ports, mark_ready, worker_env  # noqa: F401

#: Exit code of a worker that saved a checkpoint after SIGTERM (128 + SIGTERM), and of the launcher
#: when the job was preempted: relaunching it resumes from that checkpoint.
PREEMPTED_EXIT_CODE = 143

_STOP_GRACE = 60.0  # seconds workers get to save and exit after a preemption or a forwarded signal
_POLL = 0.05
_PREFIX = "kerastrainer launch: "
_KEPT_LINES = 200  # of each worker's output, searched for the task TensorFlow reports unhealthy


@dataclass
class _Worker:
    rank: int
    proc: subprocess.Popen
    reader: threading.Thread


class _Printer:
    """Writes whole lines from several threads; the lock keeps lines from interleaving."""

    def __init__(self, output) -> None:
        self.output = output
        self.lock = threading.Lock()
        self.recent: collections.defaultdict[int, collections.deque[str]] = (
            collections.defaultdict(lambda: collections.deque(maxlen=_KEPT_LINES)))

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
                text = raw.decode(errors="replace").rstrip("\r\n")
                self.recent[rank].append(text)
                self.line(f"[worker {rank}] " + text)


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
    deadline = time.monotonic() + start_timeout
    ready = set()
    forwarded_at = preempted_at = None
    while True:
        time.sleep(_POLL)
        now = time.monotonic()
        codes = [w.proc.poll() for w in workers]
        if received:  # the launcher got SIGTERM/SIGINT: let the workers save, then end
            if forwarded_at is None:
                printer.say(f"received {signal.Signals(received[0]).name}; stopping the workers")
                _signal_groups(workers, signal.SIGTERM)
                forwarded_at = now
            if None not in codes or len(received) > 1 or now > forwarded_at + _STOP_GRACE:
                saved = [w.rank for w, c in zip(workers, codes) if c == PREEMPTED_EXIT_CODE]
                if len(saved) < len(workers):
                    printer.say(
                        "not every worker saved a checkpoint before it stopped (saved: "
                        f"{', '.join(map(str, saved)) or 'none'}); a relaunch resumes from the "
                        "last checkpoint written before the signal, if any")
                _terminate(workers, grace=0)  # a second signal, or the grace is over: no waiting
                return 128 + received[0], False
            continue
        failed = [w for w, c in zip(workers, codes) if c not in (None, 0, PREEMPTED_EXIT_CODE)]
        if failed:
            for worker in failed:
                worker.reader.join(timeout=1)  # its last lines (a traceback) before our message
                printer.say(describe(worker))
            for note in suspects(failed, workers, printer.recent):
                printer.say(note)
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


def _attempt(argv, nproc, attempt, start_timeout, kill_grace, printer, received,
             collective_timeout=None, nodes=None):
    ready_dir = tempfile.mkdtemp(prefix="kt-launch-")
    workers = []
    try:
        # New ports on every attempt: the old ones may still be held.
        ports = free_ports(nproc)
        addresses = None
        first = 0
        if nodes is not None:  # other hosts connect: every interface, and the nodes' addresses
            ports = free_ports(nproc, host="")
            printer.say(f"node {nodes.rank} of {nodes.count}: meeting the other nodes at "
                        f"{nodes.host}:{nodes.port}")
            try:
                addresses = rendezvous(nodes, ports, start_timeout)
            except (TimeoutError, ValueError) as error:
                printer.say(str(error))
                return 1, False
            first = nodes.rank * nproc
        for rank in range(first, first + nproc):
            proc = subprocess.Popen(
                argv,
                env=worker_env(rank, ports, attempt=attempt, ready_dir=ready_dir,
                               collective_timeout=collective_timeout, addresses=addresses),
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


def _check_launch(command, nproc, max_restarts, start_timeout, kill_grace,
                  bootstrap=True, collective_timeout=None, nodes=None) -> list:
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
    if nodes is not None and max_restarts:
        raise ValueError("--max-restarts needs a job on one node: the nodes of a multi-node job "
                         "cannot restart together; let the scheduler requeue it (SLURM's "
                         f"--requeue) and resume from the last checkpoint. Received: "
                         f"--max-restarts={max_restarts} with --nnodes {nodes.count}")
    if collective_timeout is not None:
        ok = isinstance(collective_timeout, (int, float)) and 0 < collective_timeout < float("inf")
        _check("collective-timeout", collective_timeout, ok, "a finite number of seconds > 0")
    if command[0].endswith(".py") and not os.path.isfile(command[0]):
        raise FileNotFoundError(f"Script not found: {command[0]!r}. Pass the path of the training "
                                "script, relative to the current folder.")
    if not command[0].endswith(".py") and shutil.which(command[0]) is None:
        raise FileNotFoundError(f"Program not found: {command[0]!r}. Pass a .py script or a "
                                "program on the PATH.")
    if not command[0].endswith(".py"):
        return command
    if not bootstrap:
        return [sys.executable, *command]
    # The bootstrap creates the strategy before the script runs (the script may build data first).
    return [sys.executable, "-m", "kerastrainer.distributed.bootstrap", *command]


def launch(command, *, nproc: int, max_restarts: int = 0, start_timeout: float = 300.0,
           kill_grace: float = 5.0, bootstrap: bool = True,
           collective_timeout: float | None = None, nodes: Nodes | None = None,
           output=None) -> int:
    """Runs ``nproc`` workers of ``command`` and supervises them until the job ends.

    Args:
        command: The worker command; a first item ending in ``.py`` runs with this Python.
        nproc: How many workers.
        max_restarts: How many times to restart all workers after one fails.
        start_timeout: Seconds within which every worker must call `mark_ready`.
        kill_grace: Seconds between SIGTERM and SIGKILL when stopping workers after a failure.
        bootstrap: Start a ``.py`` script through `kerastrainer.distributed.bootstrap`, which
            creates the MultiWorkerMirroredStrategy before the script runs (so the script may seed
            and build its data before the Trainer). ``False`` runs ``python script.py`` as is
            (a script that uses no TensorFlow starts faster).
        collective_timeout: Seconds a collective waits for a peer before the job fails (the
            workers' ``KT_COLLECTIVE_TIMEOUT``; default 600). A stopped or stuck worker is then
            named in the report.
        nodes: This host's place in a job over several hosts (`rendezvous.Nodes`); ``None``:
            every worker on this host. Workers get global ranks ``nodes.rank * nproc + i``.
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
    argv = _check_launch(list(command), nproc, max_restarts, start_timeout, kill_grace,
                         bootstrap, collective_timeout, nodes)
    printer = _Printer(output or sys.stdout)
    received = []
    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        for signum in (signal.SIGTERM, signal.SIGINT):  # recorded; _supervise forwards it
            previous[signum] = signal.signal(signum, lambda number, _: received.append(number))
    try:
        for attempt in range(max_restarts + 1):
            if attempt:
                printer.say(f"restarting all workers (restart {attempt} of {max_restarts})")
            code, restartable = _attempt(
                argv, nproc, attempt, start_timeout, kill_grace, printer, received,
                collective_timeout, nodes)
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
    parser.add_argument("--nnodes", type=int, default=None, metavar="N",
                        help="hosts in the job, each running this same command (default: 1, or "
                             "SLURM's node count inside a SLURM job)")
    parser.add_argument("--node-rank", type=int, default=None, metavar="R",
                        help="this host's index, 0 on the coordinator's host")
    parser.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                        help="node 0's host and a free port where the nodes meet")
    parser.add_argument("--collective-timeout", type=float, default=None, metavar="S",
                        help="seconds a collective waits for a stuck or stopped peer before the "
                             "job fails and names it (default: 600)")
    parser.add_argument("--no-bootstrap", dest="bootstrap", action="store_false",
                        help="run the script as `python script.py`, without creating the "
                             "strategy before it (for scripts that use no TensorFlow)")
    parser.add_argument("script", help="the training script (or a program on the PATH)")
    rest = parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="...",
                               help="the script's own arguments, passed through untouched")
    rest.required = False  # a script without arguments is fine; argparse would call it missing
    return parser


def run_parsed(args: argparse.Namespace) -> int:
    """Runs `launch` with the arguments of `add_arguments`; 2 on a bad argument."""
    try:
        nodes = Nodes.from_options(args.nnodes, args.node_rank, args.coordinator)
        return launch([args.script, *args.script_args], nproc=args.nproc,
                      max_restarts=args.max_restarts, start_timeout=args.start_timeout,
                      bootstrap=args.bootstrap, collective_timeout=args.collective_timeout,
                      nodes=nodes)
    except (ValueError, FileNotFoundError) as error:
        print(_PREFIX + str(error), file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """``python -m kerastrainer.distributed.launch [--nproc N] ... script.py [args...]``."""
    parser = argparse.ArgumentParser(prog="kerastrainer launch", description=__doc__.split("\n")[0])
    return run_parsed(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
