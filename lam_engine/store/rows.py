"""Rows of the memories table: a batch prepared for SQL, and its inserts and updates."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from ..errors import DimensionMismatchError, DuplicateIdError, InvalidParameterError
from .codec import encode_payloads, loads

_IN_CHUNK = 500  # ids per "IN (...)" lookup, well under SQLite's bound-variable limit


def prepare_batch(
    ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any] | None]
) -> tuple[list[str], list[bytes], list[str | None], int]:
    """(ids, float32 blobs, payload texts, d) of a batch; refuses a malformed one."""
    ids = list(ids)
    xi = np.asarray(vectors)
    if xi.ndim != 2 or xi.shape[0] != len(ids) or len(payloads) != len(ids):
        raise InvalidParameterError(
            "ids, vectors (n, d) and payloads must have the same length n",
            {"ids": len(ids), "vectors": list(xi.shape), "payloads": len(payloads)},
        )
    if not all(isinstance(i, str) for i in ids):
        raise InvalidParameterError("memory ids must be strings")
    try:
        "".join(ids).encode()
    except UnicodeEncodeError:
        raise InvalidParameterError("memory ids must be valid unicode") from None
    if len(set(ids)) != len(ids):
        raise DuplicateIdError("the same id appears twice in one batch")
    # One bytes object for the batch, sliced per row: far cheaper than n tobytes() calls.
    raw = np.ascontiguousarray(xi, dtype="<f4").tobytes()
    row = xi.shape[1] * 4
    blobs = [raw[k : k + row] for k in range(0, len(raw), row)] if row else [b""] * len(ids)
    return ids, blobs, encode_payloads(payloads), int(xi.shape[1])


def check_dim(config_text: str, d: int) -> None:
    dim = loads(config_text).get("dim")
    if isinstance(dim, int) and dim != d:
        raise DimensionMismatchError(
            f"vectors have dimension {d}, the bank has {dim}", {"expected": dim, "got": d}
        )


def _existing_rows(
    conn: sqlite3.Connection, bank: str, ids: list[str]
) -> dict[str, tuple[int, int]]:
    """id → (seq, rowid) of the ids the bank holds already."""
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT id, seq, rowid FROM memories WHERE bank = ? AND id IN ({marks})",
            (bank, *chunk),
        )
        found.update((i, (seq, rowid)) for i, seq, rowid in rows)
    return found


def insert_rows(
    conn: sqlite3.Connection,
    bank: str,
    next_seq: int,
    ids: list[str],
    blobs: list[bytes],
    payloads: list[str | None],
    *,
    all_new: bool = False,
) -> list[int]:
    """Insert new ids, update replaced ones; returns each id's seq (a replaced id keeps its own)."""
    # A bank that never held a row (next_seq 0) has no ids to look up either.
    existing = {} if all_new or not next_seq else _existing_rows(conn, bank, ids)
    updates: list[tuple[bytes, str | None, int]] = []
    if not existing:  # the bulk case: every id is new, seqs are consecutive
        seqs = list(range(next_seq, next_seq + len(ids)))
        inserts = list(zip(repeat(bank), seqs, ids, blobs, payloads))
        next_seq += len(ids)
    else:
        seqs, inserts = [], []
        for id_, blob, payload in zip(ids, blobs, payloads, strict=True):
            hit = existing.get(id_)
            if hit is None:
                seqs.append(next_seq)
                inserts.append((bank, next_seq, id_, blob, payload))
                next_seq += 1
            else:
                seqs.append(hit[0])
                updates.append((blob, payload, hit[1]))
    if updates:
        conn.executemany("UPDATE memories SET vector = ?, payload = ? WHERE rowid = ?", updates)
    if inserts:
        conn.executemany(
            "INSERT INTO memories (bank, seq, id, vector, payload) VALUES (?, ?, ?, ?, ?)",
            inserts,
        )
        conn.execute("UPDATE banks SET next_seq = ? WHERE name = ?", (next_seq, bank))
    return seqs
