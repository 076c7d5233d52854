"""Rows of the memories table: a batch prepared for SQL, its inserts, updates and deletes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DimensionMismatchError, DuplicateIdError, InvalidParameterError
from .codec import encode_payloads, loads
from .keys import IdKeys

Blob = bytes | memoryview  # a row's float32 bytes, as SQLite binds them
_IN_CHUNK = 500  # ids per "IN (...)" lookup, well under SQLite's bound-variable limit


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


def _existing_rows(
    conn: sqlite3.Connection, bank: str, ids: list[str], keys: list[int]
) -> tuple[dict[str, tuple[int, int]], set[int]]:
    """(id → (seq, rowid) of the ids the bank holds, the batch's keys taken in the store).

    A row is found by its key and kept only if its bank and id are the ones asked for
    (keys.py: a key is a hash). An id whose key slot holds another row may be spilled
    (key NULL): only then are the bank's spilled rows read.
    """
    found: dict[str, tuple[int, int]] = {}
    taken: set[int] = set()
    names = set(ids)
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT key, bank, id, seq, rowid FROM memories WHERE key IN ({marks})", chunk
        )
        for key, row_bank, id_, seq, rowid in rows:
            taken.add(key)  # a slot is store-wide: whichever bank holds it
            if row_bank == bank and id_ in names:
                found[id_] = (seq, rowid)
    if any(k in taken and i not in found for i, k in zip(ids, keys, strict=True)):
        for id_, seq, rowid in spilled_rows(conn, bank):
            if id_ in names:
                found[id_] = (seq, rowid)
    return found, taken


def spilled_rows(conn: sqlite3.Connection, bank: str) -> list[tuple[str, int, int]]:
    """(id, seq, rowid) of the bank's rows whose key slot another row holds (almost never)."""
    return conn.execute(
        "SELECT id, seq, rowid FROM memories WHERE key IS NULL AND bank = ?", (bank,)
    ).fetchall()


def insert_rows(
    conn: sqlite3.Connection,
    id_keys: IdKeys,
    bank: str,
    next_seq: int,
    ids: list[str],
    blobs: list[Blob],
    payloads: list[str | None],
    *,
    all_new: bool = False,
    times: list[tuple[float | None, ...]] | None = None,
) -> list[int]:
    """Insert new ids, update replaced ones; returns each id's seq (a replaced id keeps its own).

    `all_new` (the caller knows none of the ids is stored; a bank that never held a row,
    next_seq 0, holds none either): the rows go in without a lookup, and the unique key
    index refuses a key already taken. That is an id stored after all (the batch is
    refused: sqlite3.IntegrityError) or, rarely, another row with the same key: then
    the batch is redone with the lookup, which spills the newcomer.
    """
    keys = id_keys.keys(bank, ids)
    # (strength, stored_at, reinforced_at, expires_at) per row (schema.TIMES).
    when = times if times is not None else [(None, None, None, None)] * len(ids)
    if all_new or not next_seq:
        conn.execute("SAVEPOINT lam_all_new")
        try:
            seqs = list(range(next_seq, next_seq + len(ids)))
            rows = [
                (bank, seq, i, k, b, p, *t)
                for seq, i, k, b, p, t in zip(seqs, ids, keys, blobs, payloads, when, strict=True)
            ]
            _insert(conn, bank, next_seq + len(ids), rows)
            conn.execute("RELEASE lam_all_new")
            return seqs
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO lam_all_new")
            conn.execute("RELEASE lam_all_new")
    existing, taken = _existing_rows(conn, bank, ids, keys)
    if all_new and existing:
        raise sqlite3.IntegrityError("an id promised new is stored")
    seqs, inserts, updates = [], [], []
    for id_, key, blob, payload, t in zip(ids, keys, blobs, payloads, when, strict=True):
        hit = existing.get(id_)
        if hit is not None:
            seqs.append(hit[0])
            updates.append((blob, payload, *t, hit[1]))
            continue
        seqs.append(next_seq)
        # A key taken by another id (here or earlier in the batch): this row is spilled.
        spilled = None if key in taken else key
        inserts.append((bank, next_seq, id_, spilled, blob, payload, *t))
        taken.add(key)
        next_seq += 1
    if updates:
        conn.executemany(
            "UPDATE memories SET vector = ?, payload = ?, strength = ?, stored_at = ?,"
            " reinforced_at = ?, expires_at = ? WHERE rowid = ?",
            updates,
        )
    if inserts:
        _insert(conn, bank, next_seq, inserts)
    return seqs


def _insert(
    conn: sqlite3.Connection, bank: str, next_seq: int, rows: list[tuple[Any, ...]]
) -> None:
    conn.executemany(
        "INSERT INTO memories (bank, seq, id, key, vector, payload, strength, stored_at,"
        " reinforced_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("UPDATE banks SET next_seq = ? WHERE name = ?", (next_seq, bank))


def delete_rows(conn: sqlite3.Connection, id_keys: IdKeys, bank: str, ids: list[str]) -> int:
    """Delete ids of a bank; returns how many existed."""
    ids = list(dict.fromkeys(ids))
    existing, _ = _existing_rows(conn, bank, ids, id_keys.keys(bank, ids))
    if not existing:
        return 0
    conn.executemany("DELETE FROM memories WHERE rowid = ?", [(r,) for _, r in existing.values()])
    repair_spills(conn, id_keys)
    return len(existing)


def reinforce_rows(
    conn: sqlite3.Connection,
    id_keys: IdKeys,
    bank: str,
    ids: list[str],
    t: float,
    strength: float | None,
) -> int:
    """Set reinforced_at = t (and the strength, when given) of the ids the bank holds."""
    ids = list(dict.fromkeys(ids))
    existing, _ = _existing_rows(conn, bank, ids, id_keys.keys(bank, ids))
    conn.executemany(
        "UPDATE memories SET reinforced_at = ?, strength = COALESCE(?, strength) WHERE rowid = ?",
        [(t, strength, r) for _, r in existing.values()],
    )
    return len(existing)


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


def repair_spills(conn: sqlite3.Connection, id_keys: IdKeys) -> None:
    """After a delete: move spilled rows into the key slots it freed.

    Keeps the spill rule: a spilled row (key NULL) always finds its key slot taken, so an
    `all_new` insert of its id is refused by the unique index. Spilled rows are few
    (keys.py), so all of them are checked: one index probe when there are none.
    """
    for rowid, bank, id_ in conn.execute(
        "SELECT rowid, bank, id FROM memories WHERE key IS NULL"
    ).fetchall():
        key = id_keys.key(bank, id_)
        if conn.execute("SELECT 1 FROM memories WHERE key = ?", (key,)).fetchone() is None:
            conn.execute("UPDATE memories SET key = ? WHERE rowid = ?", (key, rowid))
