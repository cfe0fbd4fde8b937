"""HDF5 checkpoint files: a nested dict written atomically, read back with its checksum verified.

Layout: dicts are groups, NumPy arrays are datasets, everything else (numbers, strings, bools, None,
lists) is a JSON attribute named after its key. The root's ``checksum`` attribute is the SHA-256 of a
canonical walk over every dataset and attribute, so a truncated or altered file is detected.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import h5py
import numpy as np

CHECKSUM = "checksum"


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray)


def _json(value, name: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError as error:
        raise TypeError(
            f"Checkpoint entry {name} holds a {type(value).__name__}, which is neither a NumPy array "
            "nor JSON-serialisable. Convert it in state_dict() (lists, numbers, strings, arrays)."
        ) from error


def _digest_tree(tree: dict, prefix: str, digest) -> None:
    for key in sorted(tree):
        value = tree[key]
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            digest.update(f"G{name}".encode())
            _digest_tree(value, name, digest)
        elif _is_array(value):
            array = np.ascontiguousarray(value)
            digest.update(f"D{name}|{array.dtype.str}|{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(f"A{name}|{_json(value, name)}".encode())


def checksum(tree: dict) -> str:
    """The SHA-256 of ``tree``'s canonical walk (the root ``checksum`` key excluded)."""
    digest = hashlib.sha256()
    _digest_tree({k: v for k, v in tree.items() if k != CHECKSUM}, "", digest)
    return digest.hexdigest()


def _check_key(key) -> str:
    if not isinstance(key, str) or not key or "/" in key or key == ".":
        raise ValueError(f"Checkpoint keys must be non-empty strings without '/'. Received: {key!r}")
    return key


def _write_group(group: h5py.Group, tree: dict) -> None:
    for key, value in tree.items():
        key = _check_key(key)
        if isinstance(value, dict):
            _write_group(group.create_group(key), value)
        elif _is_array(value):
            group.create_dataset(key, data=value)
        else:
            group.attrs[key] = _json(value, f"{group.name}/{key}")


def write_checkpoint(path: str, tree: dict) -> None:
    """Writes ``tree`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    A crash at any point leaves either the previous file or the new one, never a mix; the temp file
    (``.<name>.tmp-*``) is never mistaken for a checkpoint.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tree = dict(tree)
    tree[CHECKSUM] = checksum(tree)
    handle, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    os.close(handle)
    try:
        with h5py.File(temp, "w") as file:
            _write_group(file, tree)
            file.flush()
        with open(temp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(temp, path)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Writes a text file atomically (temp file in the same folder, fsync, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def nest(flat: dict) -> dict:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}`` (HDF5 groups)."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def flatten(tree: dict, prefix: str = "") -> dict:
    """The inverse of `nest`."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_group(group: h5py.Group) -> dict:
    tree = {key: json.loads(value) for key, value in group.attrs.items()}
    for key, item in group.items():
        tree[key] = _read_group(item) if isinstance(item, h5py.Group) else item[()]
        if isinstance(tree[key], np.generic):
            tree[key] = np.asarray(tree[key])
    return tree


def read_checkpoint(path) -> dict:
    """Reads a checkpoint and verifies its checksum.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable HDF5 checkpoint, or its checksum does not match.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}. Check the path (ckpt_path=...).")
    try:
        with h5py.File(path, "r") as file:
            tree = _read_group(file)
    except (OSError, ValueError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Checkpoint {path!r} cannot be read as an HDF5 checkpoint (truncated or not a "
            f"checkpoint): {error}"
        ) from error
    stored = tree.get(CHECKSUM)
    if stored is None or stored != checksum(tree):
        raise ValueError(
            f"Checkpoint {path!r} is corrupted: its content does not match its checksum. Use another "
            "checkpoint (for example the previous one)."
        )
    return tree
