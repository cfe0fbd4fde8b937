"""HDF5 checkpoint files: a nested dict written atomically, read back with its checksum verified.

Layout: dicts are groups, NumPy arrays are datasets, everything else (numbers, strings, bools, None,
lists) is a JSON attribute named after its key. The root's ``checksum`` attribute is the SHA-256 of a
canonical walk over every dataset and attribute, so a truncated or altered file is detected.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile

import h5py
import numpy as np

CHECKSUM = "checksum"

#: Bytes reserved at the start of every checkpoint (HDF5's user block, which HDF5 itself skips). They
#: hold `_MAGIC`, the file's size and the SHA-256 of every byte after the block, checked before h5py
#: parses the file: a damaged file can make h5py fail with errors that do not say so, or never return.
USER_BLOCK = 512
_MAGIC = b"kerastrainer checkpoint\n"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def _readable_as_open_makes_it(path: str) -> None:
    """Gives a temp file the mode a plain ``open`` would (``0666`` less the umask): ``mkstemp``
    makes it ``0600``, which would leave checkpoints and logs unreadable to others."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


# `.<name>.tmp-<host>-<pid>-<random>`: the writer is known, so a stale one can be told from a live one
_TEMP = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+")


def make_folder(folder: str, path: str, what: str) -> None:
    """``os.makedirs(folder)``, or an error naming the file that stands where a folder must be.

    Raises:
        NotADirectoryError: a file is on the way to ``folder`` (or is ``folder``).
    """
    way = folder
    while way and not os.path.exists(way):
        parent = os.path.dirname(way)
        if parent == way:
            break
        way = parent
    if os.path.exists(way) and not os.path.isdir(way):
        raise NotADirectoryError(
            f"Cannot write {what} {path!r}: {way!r} is a file, and a folder is needed there. "
            f"Choose another path, or move the file. Received: {path!r}")
    os.makedirs(folder, exist_ok=True)


@contextlib.contextmanager
def _atomically(path: str, what: str):
    """Yields a temp path beside ``path`` to write (and fsync); then gives it ``open``'s mode,
    renames it over ``path`` and fsyncs the folder. On any failure the temp file is removed, and a
    failed write (a full disk, a quota) says which file it was and that the earlier ones are intact."""
    folder = os.path.dirname(os.path.abspath(path))
    make_folder(folder, path, what)
    prefix = f".{os.path.basename(path)}.tmp-{socket.gethostname()}-{os.getpid()}-"
    handle, temp = tempfile.mkstemp(prefix=prefix, dir=folder)
    os.close(handle)
    try:
        yield temp
        _readable_as_open_makes_it(temp)
        os.replace(temp, path)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except BaseException as error:
        full = _nearly_full(folder)  # before the temp file's space comes back
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        if not isinstance(error, (OSError, RuntimeError)):  # h5py reports a full disk as either
            raise
        code = getattr(error, "errno", None) or _errno_in(str(error))
        if code not in _FULL and full:  # h5py may name another cause (errno 5, "Slist already enabled?")
            code = errno.ENOSPC
        # For a full disk, the OS's words; h5py's own text (a dump of its write call) stays in the cause.
        reason = os.strerror(code) if code in _FULL else getattr(error, "strerror", None) or error
        fix = ("Free some space or choose another folder" if code in _FULL
               else "Check the folder (permissions, mount) or choose another")
        raise OSError(code or errno.EIO,
                      f"Could not write {what} {path!r}: {reason}. "
                      f"Nothing was replaced: the earlier files in {folder!r} are intact (the write "
                      f"went to a temporary file, now removed). {fix}, then retry.") from error


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

#: Free bytes under which a failed write is taken for a full disk, whatever the error says.
NEARLY_FULL = 1 << 20


def free_space(folder: str) -> int | None:
    """The bytes free on the file system of ``folder`` (``None``: it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _nearly_full(folder: str) -> bool:
    free = free_space(folder)
    return free is not None and free < NEARLY_FULL


def _errno_in(message: str):
    """h5py's errors carry the OS's code only in their text: ``..., errno = 28, ...``."""
    match = re.search(r"errno = (\d+)", message)
    return int(match.group(1)) if match else None


def write_checkpoint(path: str, tree: dict) -> None:
    """Writes ``tree`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    A crash at any point leaves either the previous file or the new one, never a mix; the temp file
    (``.<name>.tmp-*``) is never mistaken for a checkpoint.

    Raises:
        OSError: the file could not be written (the message names it; earlier files are intact).
    """
    path = os.fspath(path)
    tree = dict(tree)
    tree[CHECKSUM] = checksum(tree)
    with _atomically(path, "the checkpoint") as temp:
        with h5py.File(temp, "w", userblock_size=USER_BLOCK) as file:
            _write_group(file, tree)
            file.flush()
        with open(temp, "rb+") as raw:
            raw.seek(0, os.SEEK_END)
            header = _MAGIC + f"size {raw.tell()}\nsha256 {_digest_after_block(raw)}\n".encode()
            raw.seek(0)
            raw.write(header)
            raw.flush()
            os.fsync(raw.fileno())


def _digest_after_block(raw) -> str:
    """The SHA-256 of an open file's bytes after the user block."""
    digest = hashlib.sha256()
    raw.seek(USER_BLOCK)
    for piece in iter(lambda: raw.read(1 << 20), b""):
        digest.update(piece)
    return digest.hexdigest()


def _check_bytes(path: str) -> None:
    """Compares a checkpoint's bytes with the size and SHA-256 its user block holds (files written
    before it held them start with HDF5's signature: they are left to the parse and the content
    checksum).

    Raises:
        ValueError: the file is shorter or longer than written, or its bytes differ.
    """
    with open(path, "rb") as raw:
        header = raw.read(USER_BLOCK)
        if header.startswith(_HDF5_SIGNATURE):
            return  # no user block: written before it held the digest; the content checksum remains
        if not header.startswith(_MAGIC):
            raise ValueError(
                f"Checkpoint {path!r} cannot be read: the file is damaged or not a checkpoint (it "
                "starts with neither a kerastrainer header nor HDF5's signature). Use another "
                "checkpoint (for example the previous one).")
        fields = dict(line.split(" ", 1) for line in
                      header[len(_MAGIC):].split(b"\0", 1)[0].decode("ascii", "replace").splitlines()
                      if " " in line)
        raw.seek(0, os.SEEK_END)
        size = raw.tell()
        if fields.get("size") != str(size):
            raise ValueError(
                f"Checkpoint {path!r} cannot be read: the file is damaged (truncated or extended: "
                f"{size} bytes, written as {fields.get('size')}). Use another checkpoint (for "
                "example the previous one).")
        if fields.get("sha256") != _digest_after_block(raw):
            raise ValueError(
                f"Checkpoint {path!r} is corrupted: the file is damaged (its bytes do not match the "
                "checksum it was written with: altered or partly overwritten). Use another "
                "checkpoint (for example the previous one).")


def atomic_write_text(path: str, text: str) -> None:
    """Writes a text file atomically (temp file in the same folder, fsync, rename).

    Raises:
        OSError: the file could not be written (the message names it; the earlier one is intact).
    """
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes a binary file (a PNG) atomically, as `atomic_write_text` does.

    Raises:
        OSError: the file could not be written (the message names it; the earlier one is intact).
    """
    path = os.fspath(path)
    with _atomically(path, "the file") as temp:
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: str) -> list:
    """Removes the temp files that writers on this host left behind when they were killed
    (``SIGKILL``, a power cut): those whose process is gone. Another live process's temp files,
    and those written from other hosts sharing the folder, are never touched.

    Returns:
        The paths removed.
    """
    removed = []
    host = socket.gethostname()
    for entry in os.listdir(folder) if os.path.isdir(folder) else ():
        match = _TEMP.fullmatch(entry)
        if not match or match["host"] != host or process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):  # another run's sweep got it first
            os.remove(os.path.join(folder, entry))
            removed.append(os.path.join(folder, entry))
    return removed


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


def read_group(path, name: str) -> dict:
    """One top-level group of a checkpoint (``"callbacks"``), read without the rest of the file and
    without the checksum check (which reads every byte): ``{}`` when the file or the group cannot be
    read. For a quick look only; `read_checkpoint` is the reader to trust.
    """
    try:
        with h5py.File(os.fspath(path), "r") as file:
            group = file.get(name)
            return _read_group(group) if isinstance(group, h5py.Group) else {}
    except Exception:  # noqa: BLE001 - a damaged file reads as any error: nothing to see
        return {}


def read_checkpoint(path) -> dict:
    """Reads a checkpoint and verifies its checksum.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is damaged (its bytes differ from what was written), not a readable
            HDF5 checkpoint, or its checksum does not match; the message names it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}. Check the path (ckpt_path=...).")
    _check_bytes(path)
    try:
        with h5py.File(path, "r") as file:
            tree = _read_group(file)
    except Exception as error:  # noqa: BLE001 - h5py reports damage as any type (TypeError, KeyError, ...)
        raise ValueError(
            f"Checkpoint {path!r} cannot be read: the file is damaged or not a checkpoint (not "
            f"readable as HDF5): {type(error).__name__}: {error}"
        ) from error
    stored = tree.get(CHECKSUM)
    if stored is None or stored != checksum(tree):
        raise ValueError(
            f"Checkpoint {path!r} is corrupted: its content does not match its checksum. Use another "
            "checkpoint (for example the previous one)."
        )
    return tree
