"""The exclusive writer lock of an activation store: ``DIR/.lock`` held with ``fcntl.flock``.

One writer at a time: the lock is taken before the writer reads or touches anything in the store and held until
it closes. The kernel drops a ``flock`` when its file descriptor closes, so the lock is released by ``close()``,
by an exception, and by the death of the process (SIGKILL included); a ``.lock`` file left by a dead process is
therefore free and never blocks a resume. The holder writes its pid into the file so a refused writer can name
it. The file itself is never deleted (deleting it would let two writers lock two different inodes).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from difflib_models.errors import StoreLockedError

LOCK_NAME = ".lock"


class StoreLock:
    """Exclusive, non-blocking lock of the store directory ``store_dir`` (created if missing)."""

    def __init__(self, store_dir: str | Path) -> None:
        self.path = Path(store_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StoreLock:
        """Take the lock or raise :class:`StoreLockedError` naming the holder's pid (never waits)."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"the writer with pid {holder}" if holder else "another writer (pid unknown)"
            raise StoreLockedError(
                f"activation store {self.path.parent} is locked by {who} (lock file {self.path}). HINT: wait for "
                "that process to finish (an interrupted store resumes when you rerun the same command), or write "
                "to another directory; two writers cannot share one store."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a writer dropped without close() must not keep the store locked
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
