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

The layout is in schema.py (the id index's keys in keys.py), migrations from versions
1-3 in migrate.py, loading in load.py, the JSON of configs and payloads in codec.py (as
in orjson, a non-finite float inside a payload is stored as null).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    BankExistsError,
    BankNotFoundError,
    InvalidParameterError,
    StorageError,
)
from . import texts as text_rows
from .codec import dumps_text, loads
from .keys import IdKeys, read_secret
from .load import LoadedBank, VectorSink, gc_paused, read_bank
from .lock import DataDirLock
from .migrate import migrate
from .rows import check_dim, delete_rows, insert_rows, prepare_batch, repair_spills
from .schema import (
    BUSY_TIMEOUT_MS,
    PAGE_SIZE,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    create_if_fresh,
    is_not_writable,
    pragma,
    schema_version,
    storage_error,
    unsupported,
)

SYNCHRONOUS_MODES = ("FULL", "NORMAL")
# The WAL is checkpointed into the store once it holds about this much (SQLite's default,
# 1000 pages, is 16 MiB in 16 KiB pages: a checkpoint, with its fsync, every other batch
# of 5 000 × 384; at 64 MiB a batch commits in 27 ms instead of 34), and truncated back to
# twice that after a bigger transaction.
WAL_CHECKPOINT_BYTES = 64 << 20


@dataclass(frozen=True)
class BankRecord:
    name: str
    config: dict[str, Any]
    created_at: str


class Storage:
    """SQLite store of banks and their memories; see the module docstring.

    `lock`: the data directory's lock (lock.py), released by `close` (and here if the
    open fails), so the store and the right to it end together.
    """

    def __init__(
        self, path: Path | str, synchronous: str = "FULL", *, lock: DataDirLock | None = None
    ) -> None:
        try:
            self._open(path, synchronous)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        self._dir_lock = lock

    def _open(self, path: Path | str, synchronous: str) -> None:
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise InvalidParameterError(
                f"synchronous must be one of {SYNCHRONOUS_MODES}", {"synchronous": synchronous}
            )
        self.synchronous = mode
        self._lock = threading.Lock()
        self._closed = False
        self.read_only = False
        self.schema_version = SCHEMA_VERSION
        self._id_keys = IdKeys(b"")  # the store's own, once its schema is read (keys.py)
        # What opening did to an older store (migrate.py); None: nothing.
        self.migration: dict[str, Any] | None = None
        target = str(path)
        if target != ":memory:":
            try:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"storage open failed: {exc.strerror}", {"operation": "open"}
                ) from exc
        try:
            self._conn = self._connect(target, mode)
            # SQLite silently opens a file it may not write read-only; say so.
            self.read_only = target != ":memory:" and not os.access(target, os.W_OK)
        except sqlite3.Error as exc:
            if not is_not_writable(exc):
                raise storage_error("open", exc) from exc
            self._conn = self._connect_read_only(target, exc)
            self.read_only = True

    def _connect(self, target: str, mode: str) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE … COMMIT).
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Takes effect on a new file only, so it must come before WAL and the first table.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {mode}")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: bulk inserts touch many pages
            self.schema_version = self._init_schema(conn, writable=True, target=target)
            text_rows.ensure_table(conn)  # additive, any schema version (texts.py)
            page = pragma(conn, "page_size")  # known only now (a migration may change it)
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(1000, WAL_CHECKPOINT_BYTES // page)}")
            conn.execute(f"PRAGMA journal_size_limit = {2 * WAL_CHECKPOINT_BYTES}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_read_only(self, target: str, cause: sqlite3.Error) -> sqlite3.Connection:
        """Open an existing store in a read-only place: reads work, writes raise StorageError.

        A WAL database needs its -shm file; in a read-only directory it cannot be created,
        and SQLite then reads only an immutable file. That is safe only when no WAL content
        is waiting for a checkpoint (it would be ignored), so then the open fails instead.
        """
        db = Path(target)
        wal = db.with_name(db.name + "-wal")
        pending = wal.exists() and wal.stat().st_size > 0
        uris = [f"{db.resolve().as_uri()}?mode=ro"]
        if not pending:
            uris.append(f"{db.resolve().as_uri()}?mode=ro&immutable=1")
        for uri in uris if db.is_file() else []:
            try:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            except sqlite3.Error:
                continue
            try:
                self.schema_version = self._init_schema(conn, writable=False, target=target)
                return conn
            except sqlite3.Error:
                conn.close()
        raise storage_error("open", cause) from cause

    def _init_schema(self, conn: sqlite3.Connection, *, writable: bool, target: str) -> int:
        """Create a fresh store's schema or migrate an old one; returns the schema version."""
        create_if_fresh(conn)
        version = schema_version(conn)
        if writable and version in READABLE_VERSIONS and version != str(SCHEMA_VERSION):
            self.migration = migrate(conn, target, version)
            version = schema_version(conn)
        if version not in READABLE_VERSIONS or (writable and version != str(SCHEMA_VERSION)):
            raise unsupported(version)
        if version == str(SCHEMA_VERSION):
            secret = read_secret(conn)
            if secret is None:
                raise unsupported(version)  # every version-4 store has one (schema.py)
            self._id_keys = IdKeys(secret)
        return int(version)

    # -- plumbing ---------------------------------------------------------------------

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise StorageError(f"storage {op} failed: storage is closed", {"operation": op})

    @contextmanager
    def _read(self, op: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open(op)
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise storage_error(op, exc) from exc

    @contextmanager
    def _write(self, op: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction; any failure rolls it back before propagating."""
        with self._lock:
            self._check_open(op)
            if self.read_only:
                # Say so before any SQL: an older layout served read-only has other columns.
                raise StorageError(
                    f"storage {op} failed: database is read-only",
                    {"operation": op, "sqlite_error": "SQLITE_READONLY"},
                )
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise storage_error(op, exc) from exc
                raise

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. after SQLITE_FULL): nothing is left open.

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
            repair_spills(conn, self._id_keys)  # another bank's rows may take its slots

    # -- memories ---------------------------------------------------------------------

    def upsert(
        self,
        bank: str,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
        *,
        all_new: bool = False,
        memory_texts: list[str | None] | None = None,  # a text bank's (texts.py)
    ) -> list[int]:
        """Store a batch in one transaction; returns each id's seq (a replaced id keeps its own).

        `all_new`: the caller knows that the bank holds none of the ids (the engine keeps
        every id in memory), so they are not looked up first. Should one be stored after
        all, its unique index refuses it and the whole batch is rolled back (StorageError).
        """
        ids, blobs, texts, d = prepare_batch(ids, vectors, payloads)
        with self._write("upsert") as conn:
            config, next_seq = self._bank_row(conn, bank)
            if not ids:
                return []
            check_dim(config, d)
            text_rows.write(conn, bank, ids, memory_texts)
            seqs = insert_rows(
                conn, self._id_keys, bank, next_seq, ids, blobs, texts, all_new=all_new
            )
            self._bump_generation(conn, bank)
            return seqs

    def delete(self, bank: str, ids: list[str]) -> int:
        """Delete ids of a bank in one transaction; returns how many existed."""
        with self._write("delete") as conn:
            self._bank_row(conn, bank)
            deleted = delete_rows(conn, self._id_keys, bank, ids)
            text_rows.delete(conn, bank, ids)
            if deleted:
                self._bump_generation(conn, bank)
            return deleted

    def load(self, bank: str, sink: VectorSink | None = None) -> LoadedBank:
        """Every memory of a bank in seq order (load.py).

        Without `sink` the vectors come back as one float32 array; with one, they are
        written to it and `LoadedBank.vectors` is None.
        """
        with self._read("load") as conn, gc_paused():
            conn.execute("BEGIN")  # one snapshot: the row count and the rows agree
            try:
                config, _ = self._bank_row(conn, bank)
                generation = self._read_generation(conn, bank)
                return read_bank(conn, bank, config, generation, sink)
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
        memory_texts: list[str | None] | None = None,
    ) -> list[int]:
        """Drop the bank if it exists, create it afresh and fill it: one transaction."""
        ids, blobs, texts, d = prepare_batch(ids, vectors, payloads)
        text = dumps_text(config)
        if ids:
            check_dim(text, d)
        with self._write("replace_bank") as conn:
            conn.execute("DELETE FROM memories WHERE bank = ?", (name,))
            conn.execute("DELETE FROM banks WHERE name = ?", (name,))
            text_rows.drop_bank(conn, name)
            repair_spills(conn, self._id_keys)  # another bank's rows may take its slots
            self._insert_bank(conn, name, text, created_at)
            text_rows.write(conn, name, ids, memory_texts)
            return insert_rows(conn, self._id_keys, name, 0, ids, blobs, texts)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise storage_error("close", exc) from exc
            finally:
                if self._dir_lock is not None:
                    self._dir_lock.release()
