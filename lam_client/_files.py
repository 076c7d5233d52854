"""Local files for snapshots: a path or an open binary file, and the `.part`-then-rename
protocol that keeps a failed export from leaving a truncated file under the target name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PathOrFile = str | os.PathLike[str] | BinaryIO


@contextlib.contextmanager
def open_binary(target: PathOrFile) -> Iterator[BinaryIO]:
    """Read a path (closed after) or an already open file (left open: the caller owns it)."""
    if isinstance(target, (str, os.PathLike)):
        with open(target, "rb") as f:
            yield f
    else:
        yield target


@contextlib.contextmanager
def part_file(target: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write `target` through `target.part`, renamed over it only once the body is complete;
    on any failure (cancellation included) the partial file is removed."""
    final = Path(target)
    tmp = final.with_name(final.name + ".part")
    try:
        with open(tmp, "wb") as f:
            yield f
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(final)


@contextlib.contextmanager
def open_for_export(target: PathOrFile) -> Iterator[BinaryIO]:
    """A path is written through `part_file`; an open file is written as it is."""
    if isinstance(target, (str, os.PathLike)):
        with part_file(target) as f:
            yield f
    else:
        yield target
