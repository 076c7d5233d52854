"""Rows of the memories table: a batch prepared for SQL, its inserts, updates and deletes."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidParameterError,
    StorageError,
)
from .codec import encode_payloads, loads

Blob = bytes | memoryview  # a row's float32 bytes, as SQLite binds them


def prepare_batch(
    ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any] | None]
) -> tuple[list[str], list[Blob], list[str | None], int]:
    """(ids, float32 blobs, payload texts, d) of a batch; refuses a malformed one."""
    ids = list(ids)
    xi = np.asarray(vectors)
    if xi.ndim != 2 or xi.shape[0] != len(ids) or len(payloads) != len(ids):
        raise InvalidParameterError(
            "ids, vectors (n, d) and payloads must have the same length n",
            {"ids": len(ids), "vectors": list(xi.shape), "payloads": len(payloads)},
        )
    # One C-level pass over the types first; a str subclass takes the slow check.
    if not set(map(type, ids)) <= {str} and not all(isinstance(i, str) for i in ids):
        raise InvalidParameterError("memory ids must be strings")
    try:
        "".join(ids).encode()
    except UnicodeEncodeError:
        raise InvalidParameterError("memory ids must be valid unicode") from None
    if len(set(ids)) != len(ids):
        raise DuplicateIdError("the same id appears twice in one batch")
    # Zero-copy views of one buffer, a row each (SQLite binds any buffer as a BLOB): a
    # bytes object per row would copy the batch twice (tobytes, then each slice).
    arr = np.ascontiguousarray(xi, dtype="<f4")
    row = xi.shape[1] * 4
    buf = arr.data.cast("B") if arr.size else memoryview(b"")
    blobs: list[Blob] = (
        [buf[k : k + row] for k in range(0, len(buf), row)] if row else [b""] * len(ids)
    )
    return ids, blobs, encode_payloads(payloads), int(xi.shape[1])


def check_dim(config_text: str, d: int) -> None:
    dim = loads(config_text).get("dim")
    if isinstance(dim, int) and dim != d:
        raise DimensionMismatchError(
            f"vectors have dimension {d}, the bank has {dim}", {"expected": dim, "got": d}
        )


def stored_seqs(conn: sqlite3.Connection, bank: str, ids: Sequence[str]) -> dict[str, int]:
    """id → seq of those of `ids` that the bank holds, read from the store.

    For callers that do not mirror the store (the engine passes its own map): there is no
    id index (schema.py, "No id index"), so this reads every id of the bank once.
    """
    names = set(ids)
    rows = conn.execute("SELECT id, seq FROM memories WHERE bank = ?", (bank,))
    return {id_: seq for id_, seq in rows if id_ in names}


def insert_rows(
    conn: sqlite3.Connection,
    bank: str,
    next_seq: int,
    ids: list[str],
    blobs: list[Blob],
    payloads: list[str | None],
    stored: Mapping[str, int],
    *,
    times: list[tuple[float | None, ...]] | None = None,
) -> list[int]:
    """Insert new ids, update replaced ones; returns each id's seq (a replaced id keeps its own).

    `stored`: the seq of each id of the batch that the bank holds (others are new).
    """
    # (strength, stored_at, reinforced_at, expires_at) per row (schema.TIMES).
    when = times if times is not None else [(None, None, None, None)] * len(ids)
    if not stored:  # the bulk case: no replaced id, no per-row branch
        seqs = list(range(next_seq, next_seq + len(ids)))
        rows = [
            (bank, seq, i, b, p, *t)
            for seq, i, b, p, t in zip(seqs, ids, blobs, payloads, when, strict=True)
        ]
        _insert(conn, bank, next_seq + len(ids), rows)
        return seqs
    seqs, inserts, updates = [], [], []
    for id_, blob, payload, t in zip(ids, blobs, payloads, when, strict=True):
        seq = stored.get(id_)
        if seq is not None:
            seqs.append(seq)
            updates.append((blob, payload, *t, bank, seq, id_))
            continue
        seqs.append(next_seq)
        inserts.append((bank, next_seq, id_, blob, payload, *t))
        next_seq += 1
    if updates:
        cur = conn.executemany(
            "UPDATE memories SET vector = ?, payload = ?, strength = ?, stored_at = ?,"
            " reinforced_at = ?, expires_at = ? WHERE bank = ? AND seq = ? AND id = ?",
            updates,
        )
        _check_rows("upsert", cur.rowcount, len(updates))
    if inserts:
        _insert(conn, bank, next_seq, inserts)
    return seqs


def _check_rows(op: str, changed: int, expected: int) -> None:
    """A replaced id's row must be where the caller said (its seq, its id): otherwise the
    caller's map and the store disagree, and the transaction is refused whole."""
    if changed != expected:
        raise StorageError(
            f"storage {op} failed: rows are not where the bank's map says",
            {"operation": op, "expected_rows": expected, "found_rows": changed},
        )


def _insert(
    conn: sqlite3.Connection, bank: str, next_seq: int, rows: list[tuple[Any, ...]]
) -> None:
    conn.executemany(
        "INSERT INTO memories (bank, seq, id, vector, payload, strength, stored_at,"
        " reinforced_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("UPDATE banks SET next_seq = ? WHERE name = ?", (next_seq, bank))


def delete_rows(conn: sqlite3.Connection, bank: str, stored: Mapping[str, int]) -> int:
    """Delete the rows of `stored` (id → seq, ids the bank holds); returns how many."""
    cur = conn.executemany(
        "DELETE FROM memories WHERE bank = ? AND seq = ? AND id = ?",
        [(bank, seq, id_) for id_, seq in stored.items()],
    )
    _check_rows("delete", cur.rowcount, len(stored))
    return len(stored)


def reinforce_rows(
    conn: sqlite3.Connection,
    bank: str,
    stored: Mapping[str, int],
    t: float,
    strength: float | None,
) -> int:
    """Set reinforced_at = t (and the strength, when given) of the rows of `stored`."""
    cur = conn.executemany(
        "UPDATE memories SET reinforced_at = ?, strength = COALESCE(?, strength)"
        " WHERE bank = ? AND seq = ? AND id = ?",
        [(t, strength, bank, seq, id_) for id_, seq in stored.items()],
    )
    _check_rows("reinforce", cur.rowcount, len(stored))
    return len(stored)


def row_times(
    n: int,
    strengths: Any = None,
    stored_at: Any = None,
    reinforced_at: Any = None,
    expires: Any = None,
) -> list[tuple[float | None, ...]]:
    """Per-row (strength, stored_at, reinforced_at, expires_at) for SQL, each argument an
    array, a scalar (stored_at) or None; strength 1, NaN (never) and inf are NULL."""

    def column(x: Any, neutral: float) -> list[float | None]:
        if x is None:
            return [None] * n
        given = np.asarray(x, dtype=np.float64)
        arr = np.broadcast_to(given, (n,))
        # Vectorized: a per-element numpy-scalar loop cost 0.45 s per 200k stored rows.
        keep = np.isfinite(arr) & (arr != neutral)
        if not keep.any():
            return [None] * n
        if given.ndim == 0:  # one value for every row (stored_at): one float, shared
            return [float(given)] * n
        values: list[float | None] = arr.tolist()
        if keep.all():
            return values
        return [v if k else None for v, k in zip(values, keep.tolist(), strict=True)]

    return list(
        zip(
            column(strengths, 1.0),
            column(stored_at, np.nan),
            column(reinforced_at, np.nan),
            column(expires, np.inf),
            strict=True,
        )
    )
