"""The store's connection: opening (or migrating) the file, transactions, closing.

`StoreConnection` is the plumbing under `Storage` (storage.py): one SQLite connection in
WAL mode guarded by one lock, read and write transactions that turn any sqlite3 failure
into `StorageError`, the read-only fallback. `Storage` adds the banks and memories.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError, StorageError
from . import texts as text_rows
from .checkpoint import SAFETY_FACTOR, Checkpointer
from .lock import DataDirLock
from .migrate import migrate
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
# of 5 000 × 384; at 64 MiB a batch commits in 27 ms instead of 34), by a thread of its
# own (checkpoint.py), and truncated back to twice that after a bigger transaction.
WAL_CHECKPOINT_BYTES = 64 << 20
# What a committed row costs the WAL at least, for the checkpointer's count (b-tree cell,
# index entries): a write that knows its size (vectors) says so.
_ROW_WAL_BYTES = 256


class StoreConnection:
    """One SQLite connection and its transactions (module docstring).

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
        self._checkpointer = (
            None
            if self.read_only or target == ":memory:"
            else Checkpointer(target, mode, WAL_CHECKPOINT_BYTES, self._lock)
        )

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
            # The safety net behind checkpoint.py's thread: SQLite's own, further out.
            autocheckpoint = SAFETY_FACTOR * WAL_CHECKPOINT_BYTES // page
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(1000, autocheckpoint)}")
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
    def _write(self, op: str, wal_bytes: int = 0) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction; any failure rolls it back before propagating.
        `wal_bytes`: what it writes, where it knows (the vectors' bytes of an upsert)."""
        with self._lock:
            self._check_open(op)
            if self.read_only:
                # Say so before any SQL: an older layout served read-only has other columns.
                raise StorageError(
                    f"storage {op} failed: database is read-only",
                    {"operation": op, "sqlite_error": "SQLITE_READONLY"},
                )
            conn = self._conn
            changes = conn.total_changes
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise storage_error(op, exc) from exc
                raise
            if self._checkpointer is not None:
                rows = conn.total_changes - changes
                self._checkpointer.wrote(max(wal_bytes, rows * _ROW_WAL_BYTES, PAGE_SIZE))

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. after SQLITE_FULL): nothing is left open.

    def close(self) -> None:
        if self._checkpointer is not None:  # first: its last pass may need the lock
            self._checkpointer.stop()
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
