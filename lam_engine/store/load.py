"""Streaming a bank out of the store.

``Storage.load`` reads a bank in one read transaction, in chunks of about
``LOAD_CHUNK_BYTES`` of vectors, into an array allocated once for the whole bank, or into
a caller's ``VectorSink`` (the engine writes straight into its bank's device tensor, in
the bank's dtype): the peak is the bank's own size, its ids and payloads as Python
objects and one chunk, not a Python tuple per row plus float32 copies.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import StorageError
from .codec import decode_payloads, loads
from .texts import read as read_texts

LOAD_CHUNK_BYTES = 8 << 20  # vector bytes per fetch (reused heap, not fresh mmaps)
_LOAD_CHUNK_ROWS = (1024, 65536)


@dataclass
class LoadedBank:
    """All memories of a bank in seq (insertion) order."""

    ids: list[str]
    seqs: np.ndarray  # (N,) int64
    vectors: np.ndarray | None  # (N, d) float32; None when they went to a VectorSink
    payloads: list[dict[str, Any] | None]
    generation: int | None = None  # the bank's write generation at this read (storage.py)
    texts: dict[str, str] = field(default_factory=dict)  # id → text (a text bank's: texts.py)
    # (strength, stored_at, reinforced_at, expires_at) float64 (N,) each: 1, NaN (never),
    # inf (never) where NULL; None from a store older than version 5.
    times: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


class VectorSink(Protocol):
    """Where `Storage.load` streams a bank's vectors."""

    def reserve(self, n: int, d: int) -> None:
        """Called once, before any write: the bank has n rows of dimension d."""

    def write(self, start: int, block: np.ndarray) -> None:
        """Rows start … start + len(block) - 1, float32 (k, d); valid during the call only."""


class _ArraySink:
    """The default sink: one float32 array for the whole bank."""

    array: np.ndarray

    def reserve(self, n: int, d: int) -> None:
        self.array = np.empty((n, d), dtype=np.float32)

    def write(self, start: int, block: np.ndarray) -> None:
        self.array[start : start + len(block)] = block


def read_bank(
    conn: sqlite3.Connection,
    bank: str,
    config_text: str,
    generation: int | None,
    sink: VectorSink | None,
    *,
    now: float | None = None,
    times: bool = True,
) -> LoadedBank:
    """Every row of `bank` in seq order (with `now`: not expired at `now`); the caller holds
    a read transaction. `times`: the store has the forgetting columns (version 5)."""
    dim = loads(config_text).get("dim")
    d = dim if isinstance(dim, int) and dim > 0 else None
    alive = " AND (expires_at IS NULL OR expires_at > ?)" if times and now is not None else ""
    args: tuple[Any, ...] = (bank, now) if alive else (bank,)
    (n,) = conn.execute(f"SELECT COUNT(*) FROM memories WHERE bank = ?{alive}", args).fetchone()
    legacy = 0.0
    if times:
        row = conn.execute("SELECT value FROM meta WHERE key = 'legacy_stored_at'").fetchone()
        legacy = float(row[0]) if row is not None else 0.0
    cols = ", strength, stored_at, reinforced_at, expires_at" if times else ""
    when: list[tuple[Any, ...]] = []
    target = _ArraySink() if sink is None else sink
    seqs = np.empty(n, dtype=np.int64)
    ids: list[str] = []
    payloads: list[dict[str, Any] | None] = []
    rows_per_fetch = int(np.clip(LOAD_CHUNK_BYTES // (4 * (d or 128)), *_LOAD_CHUNK_ROWS))
    cursor = conn.execute(
        f"SELECT seq, id, vector, COALESCE(payload, 'null'){cols} FROM memories"
        f" WHERE bank = ?{alive} ORDER BY seq",
        args,
    )
    start = 0
    while rows := cursor.fetchmany(rows_per_fetch):
        k = len(rows)
        columns = list(zip(*rows, strict=True))
        del rows
        chunk_seqs, chunk_ids, blobs, texts = columns[:4]
        if times:
            when.extend(zip(*columns[4:], strict=True))
        if d is None:
            d = len(blobs[0]) // 4
        if start + k > n or set(map(len, blobs)) != {4 * d}:
            raise StorageError("storage load failed: inconsistent vector sizes", {"bank": bank})
        if start == 0:
            target.reserve(n, d)
        # A bytearray join gives a writable buffer (torch.from_numpy wants one).
        block = np.frombuffer(bytearray().join(blobs), dtype="<f4").reshape(k, d)
        del blobs
        target.write(start, block)
        seqs[start : start + k] = chunk_seqs
        ids.extend(chunk_ids)
        decoded = decode_payloads(texts)
        if decoded is None:
            raise StorageError("storage load failed: corrupt payload", {"bank": bank})
        payloads.extend(decoded)
        start += k
    if start != n:
        raise StorageError("storage load failed: inconsistent row count", {"bank": bank})
    if n == 0:
        target.reserve(0, d or 0)
    return LoadedBank(
        times=_times(when, legacy) if times else None,
        ids=ids,
        seqs=seqs,
        vectors=target.array if isinstance(target, _ArraySink) else None,
        payloads=payloads,
        generation=generation,
        texts=read_texts(conn, bank),  # in the same read transaction as the rows
    )


def _times(
    rows: list[tuple[Any, ...]], legacy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The forgetting columns as float64 arrays, NULLs as their neutral values."""
    a = np.array(rows, dtype=object).reshape(len(rows), 4)

    def col(j: int, null: float) -> np.ndarray:
        c = a[:, j]
        return np.where(c == None, null, c).astype(np.float64)  # noqa: E711

    return col(0, 1.0), col(1, legacy), col(2, np.nan), col(3, np.inf)
