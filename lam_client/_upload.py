"""Chunking for `upload` and a rich progress bar (on stderr, so stdout stays clean)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ._ops import as_rows

Batch = tuple[np.ndarray, list[Any] | None, list[Any] | None]


def batches(
    vectors: Any,
    ids: Sequence[str | None] | None,
    payloads: Sequence[dict[str, Any] | None] | None,
    batch_size: int,
) -> Iterator[Batch]:
    if batch_size < 1:
        raise ValueError("batch_size must be ≥ 1")
    xi = as_rows(vectors)  # (N, d)
    n = xi.shape[0]
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        yield (
            xi[lo:hi],
            None if ids is None else list(ids[lo:hi]),
            None if payloads is None else list(payloads[lo:hi]),
        )


def progress_bar(enabled: bool, description: str = "storing") -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )
