"""Durable store of banks and memories: SQLite in WAL mode (the package that speaks SQL).

Durability
    ``synchronous="FULL"`` (default): every method that writes returns only after its
    transaction is committed and the WAL is fsync'ed, so an acknowledged batch survives
    a kill of the process *and* a crash of the operating system or a power cut.
    ``synchronous="NORMAL"`` (opt-in, faster): the WAL is fsync'ed at checkpoints only;
    an acknowledged batch survives a kill of the process, but the last transactions may
    be lost (never half-applied) if the machine itself goes down.

Atomicity
    Each write method is ONE transaction: a batch is stored whole or not at all. Any
    ``sqlite3.Error`` (disk full, read-only file or directory, I/O error, locked database)
    rolls the transaction back and is raised as ``StorageError``, whose message names
    the failure and never carries SQL text.

Read-only stores
    A store that cannot be written (read-only file, directory or mount) still opens, read
    only (``Storage.read_only``): ``list_banks`` and ``load`` work, every write raises
    ``StorageError`` ("database is read-only"), so a service can keep answering queries.

Threads
    One connection (``check_same_thread=False``) guarded by one ``threading.Lock``: every
    call, reads included, is serialized. The engine keeps the memories in RAM and reads
    the store only at start (``load``), so the lock costs nothing on the query path.

Write generations
    Every committed write to a bank (create, replace, config change, an upsert or delete
    that changes rows) stamps the bank with a fresh ``generation``, taken from the
    store-wide counter in the same transaction. A value is never handed out twice in a
    store, not even to a bank deleted and created again under the same name: a file
    derived from a bank (the engine's saved prefilter index) that records the generation
    it was made at matches the bank exactly when the generations are equal.

The layout is in schema.py (why there is no id index: "No id index"), migrations from
versions 1-5 in migrate.py, loading in load.py, the JSON of configs and payloads in codec.py (as
in orjson, a non-finite float inside a payload is stored as null).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BankExistsError, BankNotFoundError
from ..gcpause import gc_paused
from . import texts as text_rows
from .codec import dumps_text, loads
from .connection import SYNCHRONOUS_MODES, WAL_CHECKPOINT_BYTES, StoreConnection
from .load import LoadedBank, VectorSink, read_bank
from .rows import (
    check_dim,
    delete_rows,
    insert_rows,
    prepare_batch,
    reinforce_rows,
    stored_seqs,
)

__all__ = ["SYNCHRONOUS_MODES", "WAL_CHECKPOINT_BYTES", "BankRecord", "Storage"]


@dataclass(frozen=True)
class BankRecord:
    name: str
    config: dict[str, Any]
    created_at: str


class Storage(StoreConnection):
    """SQLite store of banks and their memories; see the module docstring.

    The connection, its transactions and `close` are `StoreConnection`'s (connection.py).
    """

    def _bump_generation(self, conn: sqlite3.Connection, bank: str) -> None:
        """Stamp `bank` with the next store-wide generation (inside a write transaction)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        generation = int(row[0]) + 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
        conn.execute("UPDATE banks SET generation = ? WHERE name = ?", (generation, bank))

    def _read_generation(self, conn: sqlite3.Connection, bank: str) -> int | None:
        if self.schema_version < 2:
            return None  # a version-1 store served read-only: no generations
        row = conn.execute("SELECT generation FROM banks WHERE name = ?", (bank,)).fetchone()
        if row is None:
            raise BankNotFoundError(f"bank {bank!r} not found", {"bank": bank})
        return int(row[0])

    @staticmethod
    def _bank_row(conn: sqlite3.Connection, bank: str) -> tuple[str, int]:
        row = conn.execute("SELECT config, next_seq FROM banks WHERE name = ?", (bank,)).fetchone()
        if row is None:
            raise BankNotFoundError(f"bank {bank!r} not found", {"bank": bank})
        return row[0], int(row[1])

    # -- banks ------------------------------------------------------------------------

    def list_banks(self) -> list[BankRecord]:
        with self._read("list_banks") as conn:
            rows = conn.execute(
                "SELECT name, config, created_at FROM banks ORDER BY ord"
            ).fetchall()
        return [BankRecord(name, loads(config), created_at) for name, config, created_at in rows]

    def generation(self, bank: str) -> int | None:
        """The bank's write generation (module doc); None on a version-1 read-only store."""
        with self._read("generation") as conn:
            return self._read_generation(conn, bank)

    def create_bank(self, name: str, config: dict[str, Any], created_at: str) -> None:
        text = dumps_text(config)
        with self._write("create_bank") as conn:
            self._insert_bank(conn, name, text, created_at)

    def _insert_bank(
        self, conn: sqlite3.Connection, name: str, config: str, created_at: str
    ) -> None:
        if conn.execute("SELECT 1 FROM banks WHERE name = ?", (name,)).fetchone():
            raise BankExistsError(f"bank {name!r} already exists", {"bank": name})
        conn.execute(
            "INSERT INTO banks (name, config, created_at, ord, next_seq)"
            " VALUES (?, ?, ?, (SELECT COALESCE(MAX(ord), -1) + 1 FROM banks), 0)",
            (name, config, created_at),
        )
        self._bump_generation(conn, name)

    def update_bank_config(self, name: str, config: dict[str, Any]) -> None:
        text = dumps_text(config)
        with self._write("update_bank_config") as conn:
            self._bank_row(conn, name)
            conn.execute("UPDATE banks SET config = ? WHERE name = ?", (text, name))
            self._bump_generation(conn, name)

    def delete_bank(self, name: str) -> None:
        with self._write("delete_bank") as conn:
            self._bank_row(conn, name)
            conn.execute("DELETE FROM memories WHERE bank = ?", (name,))
            conn.execute("DELETE FROM banks WHERE name = ?", (name,))
            text_rows.drop_bank(conn, name)

    # -- memories ---------------------------------------------------------------------

    def upsert(
        self,
        bank: str,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
        *,
        stored: Mapping[str, int] | None = None,
        times: list[tuple[float | None, ...]] | None = None,
        memory_texts: list[str | None] | None = None,  # a text bank's (texts.py)
    ) -> list[int]:
        """Store a batch in one transaction; returns each id's seq (a replaced id keeps its own).

        `times`: per row (strength, stored_at, reinforced_at, expires_at), rows.row_times.

        `stored`: the seq of each id of the batch that the bank holds, as the caller knows
        it (the engine keeps every id in memory; ``{}``: all new); the other ids are
        inserted. None: the store reads the bank's ids to tell (schema.py, "No id index").
        A replaced row not found at its seq with its id refuses the batch (StorageError).
        """
        ids, blobs, texts, d = prepare_batch(ids, vectors, payloads)
        with self._write("upsert", wal_bytes=4 * d * len(ids)) as conn:
            config, next_seq = self._bank_row(conn, bank)
            if not ids:
                return []
            check_dim(config, d)
            text_rows.write(conn, bank, ids, memory_texts)
            if stored is None:
                stored = stored_seqs(conn, bank, ids) if next_seq else {}
            seqs = insert_rows(conn, bank, next_seq, ids, blobs, texts, stored, times=times)
            self._bump_generation(conn, bank)
            return seqs

    def delete(self, bank: str, ids: list[str], stored: Mapping[str, int] | None = None) -> int:
        """Delete ids of a bank in one transaction; returns how many existed.

        `stored`: id → seq of those the bank holds, as in `upsert` (None: read here)."""
        with self._write("delete") as conn:
            self._bank_row(conn, bank)
            held = stored if stored is not None else stored_seqs(conn, bank, ids)
            deleted = delete_rows(conn, bank, held)
            text_rows.delete(conn, bank, ids)
            if deleted:
                self._bump_generation(conn, bank)
            return deleted

    def reinforce(
        self,
        bank: str,
        ids: list[str],
        t: float,
        strength: float | None,
        stored: Mapping[str, int] | None = None,
    ) -> int:
        """reinforced_at = t (and the strength, when given) for the ids the bank holds.

        `stored`: id → seq of those the bank holds, as in `upsert` (None: read here)."""
        with self._write("reinforce") as conn:
            self._bank_row(conn, bank)
            held = stored if stored is not None else stored_seqs(conn, bank, ids)
            n = reinforce_rows(conn, bank, held, t, strength)
            if n:
                self._bump_generation(conn, bank)
            return n

    def delete_expired(self, bank: str, now: float) -> int:
        """Delete the bank's memories whose expires_at ≤ now; returns how many."""
        with self._write("delete_expired") as conn:
            self._bank_row(conn, bank)
            cur = conn.execute(
                "DELETE FROM memories WHERE bank = ? AND expires_at IS NOT NULL"
                " AND expires_at <= ?",
                (bank, now),
            )
            if cur.rowcount:
                text_rows.delete_orphans(conn, bank)
                self._bump_generation(conn, bank)
            return int(cur.rowcount)

    def load(
        self, bank: str, sink: VectorSink | None = None, *, now: float | None = None
    ) -> LoadedBank:
        """Every memory of a bank in seq order (load.py); with `now`, those not expired.

        Without `sink` the vectors come back as one float32 array; with one, they are
        written to it and `LoadedBank.vectors` is None.
        """
        with self._read("load") as conn, gc_paused():
            conn.execute("BEGIN")  # one snapshot: the row count and the rows agree
            try:
                config, _ = self._bank_row(conn, bank)
                generation = self._read_generation(conn, bank)
                return read_bank(
                    conn, bank, config, generation, sink, now=now,
                    times=self.schema_version >= 5,
                )  # fmt: skip
            finally:
                self._rollback()  # a read transaction: nothing to keep

    def replace_bank(
        self,
        name: str,
        config: dict[str, Any],
        created_at: str,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
        times: list[tuple[float | None, ...]] | None = None,
        memory_texts: list[str | None] | None = None,
    ) -> list[int]:
        """Drop the bank if it exists, create it afresh and fill it: one transaction."""
        ids, blobs, texts, d = prepare_batch(ids, vectors, payloads)
        text = dumps_text(config)
        if ids:
            check_dim(text, d)
        with self._write("replace_bank", wal_bytes=4 * d * len(ids)) as conn:
            conn.execute("DELETE FROM memories WHERE bank = ?", (name,))
            conn.execute("DELETE FROM banks WHERE name = ?", (name,))
            text_rows.drop_bank(conn, name)
            self._insert_bank(conn, name, text, created_at)
            text_rows.write(conn, name, ids, memory_texts)
            return insert_rows(conn, name, 0, ids, blobs, texts, {}, times=times)
