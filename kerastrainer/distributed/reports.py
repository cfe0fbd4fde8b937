"""What the launcher says when a job fails: how each worker ended, and who is to blame.

A collective that times out fails on the healthy workers, so the first worker to exit is rarely
the cause; the report also names a peer that is stopped (``/proc`` says so) and the tasks named in
TensorFlow's error. Standard library only, as the launcher.
"""

from __future__ import annotations

import re
import signal

# How TensorFlow names a task in its errors: "/job:worker/replica:0/task:1", "/job:worker/task:1".
_TASK = re.compile(r"/job:worker(?:/replica:\d+)?/task:(\d+)")
# What a worker prints when its peers did not join a collective in time (the peers' heartbeats ran).
_TIMED_OUT = "Collective has timed out"


def describe(worker) -> str:
    """How a worker ended: its exit code, or the signal that killed it."""
    code, how = worker.proc.returncode, f"exited with code {worker.proc.returncode}"
    if code < 0:  # Popen's way of saying "killed by signal -code"
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # real-time signals have no name
            how = f"was killed by signal {-code}"
    return f"worker {worker.rank} (pid {worker.proc.pid}) {how}"


def process_state(pid: int) -> str | None:
    """The process's state letter from ``/proc`` ("T": stopped), ``None`` when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def suspects(failed, workers, recent) -> list[str]:
    """Why the failed workers failed, when another worker is to blame: a peer that is stopped
    (SIGSTOP, a debugger), a peer still running after a collective timed out (it never joined),
    and the tasks TensorFlow's error names."""
    notes = []
    timed_out = [w.rank for w in failed if any(_TIMED_OUT in line for line in recent[w.rank])]
    for worker in workers:
        if worker.proc.poll() is not None:
            continue
        if process_state(worker.proc.pid) in ("T", "t"):
            notes.append(f"worker {worker.rank} (pid {worker.proc.pid}) is stopped (SIGSTOP or a "
                         "debugger) and made no progress: the others timed out waiting for it")
        elif timed_out:  # alive, and not waiting in the collective: it would have timed out too
            notes.append(f"worker {worker.rank} (pid {worker.proc.pid}) is still running but never "
                         f"joined the collective that worker {timed_out[0]} timed out in: it is "
                         "stuck outside the training step (a hung input pipeline, a long callback)")
    failed_ranks = {w.rank for w in failed}
    for worker in failed:
        named = {int(rank) for line in recent[worker.rank] for rank in _TASK.findall(line)}
        others = sorted(named - failed_ranks)
        if others:
            notes.append(f"worker {worker.rank}'s error names task(s) "
                         f"{', '.join(map(str, others))} (TensorFlow's unhealthy or unreachable "
                         "peer): look there first")
    return notes
