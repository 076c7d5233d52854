"""The exclusive lock of a data directory: one live Engine per directory, at most.

Two processes (a server and an embedded client, two servers) that opened one directory
would each keep their own copy of the banks in memory and their writes would diverge
from what the other serves. So the opener takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``<data dir>/lam.lock`` and writes its pid there; a second opener, in another process or
in this one (flock locks belong to an open file, not to a process), gets
``DataDirLockedError`` naming the holder's pid, before it has touched anything.

The kernel releases the lock when its file is closed: by ``release``, when the lock
object is garbage-collected, or when the process dies, even by SIGKILL, so a stale lock
file never blocks a restart. The pid inside is informative only: the lock is the flock,
not the file's existence. A process forked (without exec) while holding the lock shares
it with its child until both have closed it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import DataDirLockedError, StorageError

LOCK_FILE = "lam.lock"


class DataDirLock:
    """A held lock on a data directory; `release` is idempotent."""

    def __init__(self, fd: int | None, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: Path | str) -> DataDirLock:
        """Lock `directory` (which must exist) or raise DataDirLockedError; writes nothing
        when the lock is held elsewhere."""
        path = Path(directory) / LOCK_FILE
        fd = _open_lock_file(path)
        if fd is None:
            # A read-only directory without a lock file: nobody can take a lock there, and
            # the store below it can only be read. Served unlocked.
            return cls(None, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageError(
                    f"cannot lock the data directory: {exc.strerror}",
                    {"operation": "lock", "path": str(path)},
                ) from exc
            who = "this process" if holder == os.getpid() else f"pid {holder}"
            raise DataDirLockedError(
                f"data directory {str(Path(directory))!r} is in use by "
                f"{who if holder is not None else 'another process'}",
                {"path": str(Path(directory)), "pid": holder},
            ) from None
        _write_pid(fd)
        return cls(fd, path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing drops the flock; the file stays (removing it would race a new opener
            # that has it open already and would then lock an unlinked file).
            os.close(fd)

    def __del__(self) -> None:
        self.release()


def _open_lock_file(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise StorageError(
                f"cannot open the data directory's lock file: {exc.strerror}",
                {"operation": "lock", "path": str(path)},
            ) from exc
    try:
        # flock needs no write access: a read-only lock file still excludes other openers.
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _write_pid(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # a read-only lock file: the lock holds all the same, only the pid is missing
