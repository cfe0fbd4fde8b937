"""Reads what an offline W&B run wrote: its ``run-<id>.wandb`` file, a log of protobuf records
in 32 KiB blocks (a 7-byte file header, then chunks of CRC, length and type)."""

from __future__ import annotations

import glob
import json
import os
import struct
import time

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path):
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as handle:
        data = handle.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = _HEADER, b""
    while position + _HEADER <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < _HEADER:  # the block's tail is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + _HEADER])
        if kind == 0 and length == 0:
            position += left
            continue
        if position + _HEADER + length > len(data):
            break  # a record still being written
        pending += data[position + _HEADER:position + _HEADER + length]
        position += _HEADER + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item):
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_file: str, *, wait_s: float = 60.0) -> dict:
    """The run's id, config, history rows, summary, artifacts and exit code. W&B's service process
    may still be writing the file when ``finish()`` has returned: read until the exit record is in."""
    deadline = time.monotonic() + wait_s
    while True:
        run = _read_once(run_file)
        if run["exit_code"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def _read_once(run_file: str) -> dict:
    run = {"config": {}, "history": [], "summary": {}, "artifacts": [], "exit_code": None}
    for record in _records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"] = record.run.run_id
            run["config"].update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            run["artifacts"].append({"name": record.artifact.name, "aliases": list(record.artifact.aliases),
                                     "metadata": json.loads(record.artifact.metadata or "{}"),
                                     "files": [e.path for e in record.artifact.manifest.contents]})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def run_files(folder) -> list[str]:
    """The ``.wandb`` files under ``folder``, oldest run first."""
    found = {os.path.realpath(path)  # wandb/latest-run links to the newest run folder
             for path in glob.glob(os.path.join(folder, "**", "run-*.wandb"), recursive=True)}
    return sorted(found, key=os.path.getmtime)
