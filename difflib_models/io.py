"""Atomic file writes: a crash never leaves a half-written file behind (temp file + fsync + rename)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically rename ``tmp_path`` onto ``path``.

    The temporary file lives in the same directory so the rename is atomic on POSIX. The file gets the mode a
    plain ``open()`` would give it (``0o666 & ~umask``: 0644 under umask 0022, not mkstemp's 0600), and the
    directory is fsynced after the rename so the new name survives a power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())  # after write: a writer may have recreated the file
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux ``/proc/self/status``);
    elsewhere set-and-restore under a lock, so concurrent threads of this library never see a wrong umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync ``directory`` so a rename inside it is durable; platforms that cannot (Windows, some network
    filesystems) are tolerated: the rename itself has already happened."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    text = json.dumps(obj, indent=indent, sort_keys=False, default=json_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for the project's values: paths as strings, arrays/tensors as lists, objects
    with ``to_dict()`` as that dict; anything else raises TypeError."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def sha256_tensor(tensor: Any) -> str:
    """sha256 of a torch tensor's float32 bytes (CPU, contiguous): the key of measurements read along a direction."""
    import torch

    return hashlib.sha256(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
