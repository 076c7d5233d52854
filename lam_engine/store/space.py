"""The disk-reserve policy of a data directory, written once.

Optional writes (the VACUUM after a migration, a saved prefilter index) go ahead only
if they leave a reserve free on their volume: 5 % of it, at least 256 MiB. The reserve
is the room that store writes need; without it an optional file could make the next
batch fail with "disk full" (HTTP 507).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RESERVE_MIN_BYTES = 256 << 20
RESERVE_FRACTION = 20  # 1/20 = 5 % of the volume


def free_bytes(path: Path) -> tuple[int, int, int] | None:
    """(free bytes, volume size, device id) of the volume of `path`, None if unknown."""
    try:
        usage = shutil.disk_usage(path)
        return usage.free, usage.total, os.stat(path).st_dev
    except OSError:
        return None


def reserve_bytes(volume_bytes: int) -> int:
    """What an optional write must leave free on a volume of this size."""
    return max(RESERVE_MIN_BYTES, volume_bytes // RESERVE_FRACTION)


@dataclass(frozen=True)
class Room:
    """The verdict of `room_for`: `ok` is None when some free space is unknown."""

    ok: bool | None
    where: Path | None = None  # the first volume short of room
    free: int = 0
    needed: int = 0  # its bytes to write plus its reserve


def room_for(writes: Iterable[tuple[Path, int]]) -> Room:
    """Whether these (directory, bytes) writes fit and leave each volume its reserve.

    Writes to directories on one volume add up (a VACUUM's temp copy and its journal
    may share one).
    """
    volumes: dict[int, tuple[Path, int, int]] = {}
    needs: dict[int, int] = {}
    for where, n_bytes in writes:
        info = free_bytes(where)
        if info is None:
            return Room(ok=None)
        free, total, dev = info
        volumes.setdefault(dev, (where, free, total))
        needs[dev] = needs.get(dev, 0) + n_bytes
    for dev, (where, free, total) in volumes.items():
        needed = needs[dev] + reserve_bytes(total)
        if free < needed:
            return Room(ok=False, where=where, free=free, needed=needed)
    return Room(ok=True)


def sqlite_temp_dir() -> Path:
    """Where SQLite (unix) puts the temporary database of a VACUUM."""
    for name in (os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"),
                 "/var/tmp", "/usr/tmp", "/tmp"):  # fmt: skip
        if name and os.path.isdir(name) and os.access(name, os.W_OK | os.X_OK):
            return Path(name)
    return Path(tempfile.gettempdir())
