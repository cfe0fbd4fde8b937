"""What a worker started by ``kerastrainer launch`` gets: its ports, its environment, and the
ready file it creates once its strategy is up. Standard library only, as the launcher."""

from __future__ import annotations

import json
import os
import socket


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Picks ``n`` distinct free TCP ports on ``host`` (``""``: every interface, for workers that
    other hosts reach).

    Every socket stays bound until all ports are chosen, so the ports are distinct. Another process
    may still take one before a worker binds it; that worker fails and ``--max-restarts`` retries
    with new ports.

    Args:
        n: How many ports.
        host: The address to bind.

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
            sockets[-1].bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_env(rank: int, ports: list[int], *, attempt: int, ready_dir: str, base_env=None,
               collective_timeout: float | None = None, addresses: list[str] | None = None) -> dict:
    """The environment of worker ``rank``.

    Args:
        rank: The worker's index in the cluster (0 is the chief).
        ports: One port per worker on ``127.0.0.1``; ``len(ports)`` is the world size.
        attempt: How many times the job was restarted before (0 on the first start).
        ready_dir: The folder where the worker signals readiness (see `mark_ready`).
        base_env: The environment to extend (default: a copy of ``os.environ``).
        collective_timeout: Seconds a collective waits for its peers (``KT_COLLECTIVE_TIMEOUT``;
            ``None``: the workers' default, 600).
        addresses: Every worker's ``host:port`` in rank order, for a job over several hosts
            (then ``ports`` is not used).

    Returns:
        A new dict with ``TF_CONFIG``, ``KT_LAUNCH_RANK``, ``KT_LAUNCH_WORLD_SIZE``,
        ``KT_LAUNCH_ATTEMPT``, ``KT_LAUNCH_READY_FILE`` and ``PYTHONUNBUFFERED=1`` set.

    Examples:
        >>> env = worker_env(1, [2222, 2223], attempt=0, ready_dir="/tmp/r", base_env={})
        >>> json.loads(env["TF_CONFIG"])["task"]
        {'type': 'worker', 'index': 1}
    """
    env = dict(os.environ if base_env is None else base_env)
    cluster = {"worker": list(addresses) if addresses else [f"127.0.0.1:{port}" for port in ports]}
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})
    env["KT_LAUNCH_RANK"] = str(rank)
    env["KT_LAUNCH_WORLD_SIZE"] = str(len(cluster["worker"]))
    env["KT_LAUNCH_ATTEMPT"] = str(attempt)
    env["KT_LAUNCH_READY_FILE"] = os.path.join(ready_dir, f"ready.{rank}")
    env["PYTHONUNBUFFERED"] = "1"  # output reaches the launcher, and the user, line by line
    if collective_timeout is not None:
        env["KT_COLLECTIVE_TIMEOUT"] = repr(float(collective_timeout))
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
