"""Readers for `lam load`: .npy (N × d), .csv (numbers; optional header with an `id`
column), .jsonl ({"id", "vector", "payload"} per line). Each yields batches lazily, so a
file larger than memory loads in constant memory (an .npy is memory-mapped).

The JSONL reader and the batching are shared with the text files of `lam load`
(cli/text.py: rows with "text" instead of "vector"), so the two formats read alike."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

Batch = tuple[np.ndarray, list[str | None] | None, list[dict[str, Any] | None] | None]
# (value, id, payload) of one row, and a batch of them as three parallel lists.
Record = tuple[Any, str | None, dict[str, Any] | None]
Rows = tuple[list[Any], list[str | None], list[dict[str, Any] | None]]
FORMATS = (".npy", ".csv", ".jsonl", ".ndjson")
# What a JSONL row's field holds, for the error message of a row without it.
_SHAPES = {"vector": "[...]", "text": '"..."'}


class InputError(ValueError):
    """The input file cannot be read as the format its extension says."""


def count_rows(path: Path) -> int:
    kind = path.suffix.lower()
    if kind == ".npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return 1 if arr.ndim == 1 else int(arr.shape[0])
    with open(path, encoding="utf-8") as f:
        n = sum(1 for line in f if line.strip())
    if kind == ".csv" and n and _has_header(path):
        n -= 1
    return n


def read_batches(path: Path, batch_size: int) -> Iterator[Batch]:
    kind = path.suffix.lower()
    if kind == ".npy":
        return _npy(path, batch_size)
    if kind == ".csv":
        return _csv(path, batch_size)
    if kind in (".jsonl", ".ndjson"):
        return _jsonl(path, batch_size)
    raise InputError(f"unsupported file type {kind!r}; use one of {', '.join(FORMATS)}")


def _npy(path: Path, batch_size: int) -> Iterator[Batch]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array (N, dim), got shape {arr.shape}")
    for lo in range(0, arr.shape[0], batch_size):
        yield np.asarray(arr[lo : lo + batch_size], dtype=np.float32), None, None


def _has_header(path: Path) -> bool:
    with open(path, encoding="utf-8", newline="") as f:
        first = next(csv.reader(f), [])
    try:
        [float(x) for x in first]
    except ValueError:
        return True
    return False


def _csv(path: Path, batch_size: int) -> Iterator[Batch]:
    header = _has_header(path)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        id_col: int | None = None
        if header:
            names = next(reader)
            id_col = names.index("id") if "id" in names else None

        def records() -> Iterator[Record]:
            for lineno, row in enumerate(reader, start=2 if header else 1):
                if not row:
                    continue
                values = [x for i, x in enumerate(row) if i != id_col]
                try:
                    numbers = [float(x) for x in values]
                except ValueError as exc:
                    raise InputError(f"{path}:{lineno}: {exc}") from exc
                yield numbers, (row[id_col] if id_col is not None else None), None

        for rows, ids, _ in batched(records(), batch_size):
            yield _matrix(rows, path), (ids if id_col is not None else None), None


def _jsonl(path: Path, batch_size: int) -> Iterator[Batch]:
    for rows, ids, payloads in batched(jsonl_records(path, "vector"), batch_size):
        yield _matrix(rows, path), ids, payloads


def jsonl_records(path: Path, field: str) -> Iterator[Record]:
    """(row[field], row's "id", row's "payload") for each non-blank line of a JSONL file;
    `field` is "vector" (vector files) or "text" (text files)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                value = rec[field]
            except (ValueError, KeyError, TypeError) as exc:
                want = f'{{"{field}": {_SHAPES.get(field, "...")}}}'
                raise InputError(f"{path}:{lineno}: expected {want}: {exc}") from exc
            yield value, rec.get("id"), rec.get("payload")


def batched(records: Iterable[Record], batch_size: int) -> Iterator[Rows]:
    """Records grouped batch_size at a time (the last batch may be shorter)."""
    values: list[Any] = []
    ids: list[str | None] = []
    payloads: list[dict[str, Any] | None] = []
    for value, id_, payload in records:
        values.append(value)
        ids.append(id_)
        payloads.append(payload)
        if len(values) == batch_size:
            yield values, ids, payloads
            values, ids, payloads = [], [], []
    if values:
        yield values, ids, payloads


def _matrix(rows: list[Any], path: Path) -> np.ndarray:
    try:
        return np.asarray(rows, dtype=np.float32)  # (n, d)
    except ValueError as exc:
        raise InputError(f"{path}: rows of different lengths or non-numbers: {exc}") from exc
