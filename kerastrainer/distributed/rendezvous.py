"""Multi-node jobs for ``kerastrainer launch``: the nodes meet at a coordinator, as torchrun's do.

The same command runs on every host (``--nnodes N --node-rank R --coordinator HOST:PORT``), or
under SLURM with no options at all (the node count, rank and hosts come from its environment).
Node 0's launcher listens at the coordinator's port; every other node's launcher connects and
sends the ports its workers will use; node 0 answers with every node's worker addresses, in node
order, so that all workers get the same ``TF_CONFIG`` cluster. Global worker ranks are
``node_rank * nproc + local rank``. Standard library only, as the launcher.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass

#: The coordinator port under SLURM when ``--coordinator`` names none (torchrun's default).
DEFAULT_PORT = 29500
_RETRY = 0.2


@dataclass(frozen=True)
class Nodes:
    """Where this launcher stands in a multi-node job.

    Attributes:
        count: how many nodes (hosts) run launchers.
        rank: this node's index (0 runs the coordinator).
        host: the coordinator's host name or address (node 0's, as the others reach it).
        port: the coordinator's port.
    """

    count: int
    rank: int
    host: str
    port: int

    @classmethod
    def from_options(cls, nnodes, node_rank, coordinator) -> "Nodes | None":
        """The ``--nnodes``/``--node-rank``/``--coordinator`` options, checked; ``None`` for one
        node (then SLURM's environment is read, see `from_slurm`).

        Raises:
            ValueError: naming the option, the value and the rule.
        """
        if nnodes is None and node_rank is None and coordinator is None:
            return cls.from_slurm(os.environ)
        if not isinstance(nnodes, int) or isinstance(nnodes, bool) or nnodes < 1:
            raise ValueError(f"--nnodes must be an integer >= 1. Received: --nnodes={nnodes!r}")
        if nnodes == 1 and node_rank in (None, 0) and coordinator is None:
            return None
        if not isinstance(node_rank, int) or isinstance(node_rank, bool) or not (
                0 <= node_rank < nnodes):
            raise ValueError(f"--node-rank must be an integer in [0, {nnodes - 1}] (one per node, "
                             f"0 on the coordinator's host). Received: --node-rank={node_rank!r}")
        host, port = parse_coordinator(coordinator)
        return cls(nnodes, node_rank, host, port)

    @classmethod
    def from_slurm(cls, env) -> "Nodes | None":
        """The job's nodes from SLURM's variables (``SLURM_NNODES``, ``SLURM_NODEID``,
        ``SLURM_JOB_NODELIST``; ``KT_COORDINATOR_PORT`` or `DEFAULT_PORT`); ``None`` outside a
        SLURM job of several nodes.

        Example:
            >>> Nodes.from_slurm({"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NODEID": "1",
            ...                   "SLURM_JOB_NODELIST": "gpu[07-08]"})
            Nodes(count=2, rank=1, host='gpu07', port=29500)
        """
        if "SLURM_JOB_ID" not in env or int(env.get("SLURM_NNODES", "1")) <= 1:
            return None
        nodelist = env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"]
        port = int(env.get("KT_COORDINATOR_PORT", DEFAULT_PORT))
        return cls(int(env["SLURM_NNODES"]), int(env["SLURM_NODEID"]), expand_nodelist(nodelist)[0],
                   port)


def parse_coordinator(text) -> tuple[str, int]:
    """``"HOST:PORT"`` as ``(host, port)``.

    Raises:
        ValueError: not of that form (the message names ``--coordinator``).
    """
    match = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", text) if isinstance(text, str) else None
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError("--coordinator must be HOST:PORT, node 0's host and a free port, e.g. "
                         f"--coordinator node01:29500. Received: --coordinator={text!r}")
    return match.group(1), int(match.group(2))


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list as host names: ``"gpu[01-02,05],cpu3"`` gives
    ``["gpu01", "gpu02", "gpu05", "cpu3"]``.

    Raises:
        ValueError: a list this parser does not understand.
    """
    hosts = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise ValueError(f"Cannot read the SLURM node list {nodelist!r}: pass --nnodes, "
                                 "--node-rank and --coordinator instead.")
            for number in range(int(low), int(high or low) + 1):
                hosts.append(f"{prefix}{number:0{len(low)}d}")
    if not hosts:
        raise ValueError(f"Cannot read the SLURM node list {nodelist!r}: pass --nnodes, "
                         "--node-rank and --coordinator instead.")
    return hosts


def _send(connection, message: dict) -> None:
    connection.sendall((json.dumps(message) + "\n").encode())


def _receive(connection) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the other launcher closed the connection")
        data += chunk
    return json.loads(data)


def rendezvous(nodes: Nodes, ports: list[int], timeout: float) -> list[str]:
    """Meets the other nodes' launchers; returns every worker's ``host:port``, in global rank order.

    Args:
        nodes: this launcher's place in the job.
        ports: the ports of this node's workers (every node must run as many).
        timeout: seconds to wait for every node (the start-up deadline).

    Raises:
        TimeoutError: a node did not join in time (the message names the missing node ranks).
        ValueError: two launchers claimed one node rank, or the nodes run different --nproc.
    """
    if nodes.rank == 0:
        return _coordinate(nodes, ports, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((nodes.host, nodes.port), timeout=5) as connection:
                connection.settimeout(max(1.0, deadline - time.monotonic()))
                _send(connection, {"node_rank": nodes.rank, "nnodes": nodes.count,
                                   "ports": ports})
                answer = _receive(connection)
            break
        except (ConnectionError, socket.timeout, OSError) as error:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"node {nodes.rank} could not reach the coordinator at {nodes.host}:"
                    f"{nodes.port} within {timeout:g} s ({error}): is node 0's launcher running, "
                    "and the port open?") from error
            time.sleep(_RETRY)
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer["addresses"]


def _coordinate(nodes: Nodes, ports: list[int], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    joined: dict[int, list[str]] = {}
    connections: list[socket.socket] = []
    with socket.create_server(("", nodes.port), reuse_port=False) as server:
        server.settimeout(_RETRY)
        try:
            while len(joined) < nodes.count - 1:
                if time.monotonic() > deadline:
                    missing = sorted(set(range(1, nodes.count)) - set(joined))
                    raise TimeoutError(
                        f"node(s) {', '.join(map(str, missing))} did not join the coordinator at "
                        f"port {nodes.port} within {timeout:g} s (start-up deadline; see "
                        "--start-timeout)")
                try:
                    connection, (address, _) = server.accept()
                except socket.timeout:
                    continue
                connections.append(connection)
                connection.settimeout(max(1.0, deadline - time.monotonic()))
                message = _receive(connection)
                error = _refusal(message, joined, nodes, ports)
                if error:
                    for other in connections:  # every waiting node stops with the same message
                        _send(other, {"error": error})
                    raise ValueError(error)
                joined[message["node_rank"]] = [f"{address}:{port}" for port in message["ports"]]
            every = [f"{nodes.host}:{port}" for port in ports]
            for rank in range(1, nodes.count):
                every += joined[rank]
            for connection in connections:
                _send(connection, {"addresses": every})
            return every
        finally:
            for connection in connections:
                connection.close()


def _refusal(message: dict, joined: dict, nodes: Nodes, ports: list[int]) -> str | None:
    rank = message.get("node_rank")
    if message.get("nnodes") != nodes.count:
        return (f"node {rank} runs --nnodes {message.get('nnodes')} but node 0 runs --nnodes "
                f"{nodes.count}: run the same command on every node")
    if rank in joined or rank == 0:
        return f"two launchers claimed --node-rank {rank}: give every node its own rank"
    if len(message.get("ports", ())) != len(ports):
        return (f"node {rank} runs --nproc {len(message.get('ports', ()))} but node 0 runs "
                f"--nproc {len(ports)}: every node must run as many workers")
    return None
