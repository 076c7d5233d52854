"""The store's SQL schema (version 6), its pragmas, and SQLite errors as StorageError.

Layout (schema version 6; version 5 without the id index, see "No id index" below)
    ``banks(name PK, config JSON, created_at, ord, next_seq, generation)``: ``ord`` keeps
    the creation order; ``next_seq`` is a per-bank counter, so a ``seq`` is never reused,
    even after deletes. ``memories(bank, seq, id, key, vector, payload, strength,
    stored_at, reinforced_at, expires_at)`` is an ordinary rowid table (rows appended in
    insertion order) with one unique index, ``(bank, seq)`` (``load``: one index range
    scan in insertion order; replaces and deletes: one probe per row). ``vector`` is
    float32 little-endian bytes, ``payload`` JSON text or NULL; ``key`` is what versions
    4-5 indexed (a hash of the id), NULL in rows written since. ``meta(key, value)``
    holds ``schema_version`` and ``generation`` (the store-wide write counter). New files
    use 16 KiB pages (``PAGE_SIZE``).

No id index (version 6)
    The engine keeps every bank's ids with their seqs in memory, and the data dir's lock
    (lock.py) makes it the store's only writer, so it tells the store which ids of a
    batch are replacements and their seqs (``Storage.upsert(stored=...)``); a caller
    without that map has the store read the bank's ids instead (a scan). Versions 3-5
    indexed the id (5: a 64-bit hash of it, spilled on collisions): a batch of random
    ids dirtied nearly every leaf page of that index, so each commit rewrote and fsynced
    a share of it that grew with the whole store (200 000 x 384 rows, batches of 5 000,
    FULL, raw SQL: 32-34 ms insert + 23-24 ms commit a batch with the index, 21-22 +
    17-18 ms without; bench/bench_store_keys.py compares the layouts).

Why not a table clustered on ``(bank, seq)`` (``WITHOUT ROWID``, versions 1 and 2):
    a vector row is 0.5-1.5 KB; a row beyond what such a page keeps locally (about 1 KB
    in 4 KiB pages) spills its tail into a mostly empty overflow page, so a d = 384 store
    took 3x the bytes of its vectors, and every batch wrote and fsync'ed all of them.
    Measured on this machine (200 000 x 384 float32, random content ids, batches of
    5 000, WAL, synchronous FULL; vectors/s, raw SQL, with the version-3 id index; scroll:
    pages of 100 rows after a random seq cursor, per s):

    ============================  ======  ======  =======  ======  ======  ========
    layout                        insert  load    replace  delete  scroll  file
    ============================  ======  ======  =======  ======  ======  ========
    WITHOUT ROWID, 4 KiB (v2)     34k     318k    48k      26k     4.0k    1 049 MB
    rowid + 2 indexes, 4 KiB      58k     568k    112k     36k     7.6k    476 MB
    rowid + 2 indexes, 16 KiB     89k     774k    169k     37k     10.6k   384 MB
    ============================  ======  ======  =======  ======  ======  ========

    (``seq`` as the INTEGER PRIMARY KEY, encoding the bank in its high bits, measured the
    same within noise, and would have needed a bank number and renumbered keys.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import StorageError

SCHEMA_VERSION = 6
# Versions this code opens; older ones are migrated to SCHEMA_VERSION when writable.
READABLE_VERSIONS = ("1", "2", "3", "4", "5", "6")
PAGE_SIZE = 16384  # new files; a migrated store gets it from its VACUUM (migrate.py)
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's lock

MEMORIES = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, key INTEGER,"
    " vector BLOB NOT NULL, payload TEXT{times})"
)
# Version 5 (API.md "Forgetting"): strength (NULL = 1), unix seconds stored / last
# reinforced (NULL: never) / expiring (NULL: never). Rows stored before version 5 have
# stored_at NULL and read meta.legacy_stored_at (the migration's time) instead.
TIMES = ", strength REAL, stored_at REAL, reinforced_at REAL, expires_at REAL"
TIME_COLUMNS = ("strength", "stored_at", "reinforced_at", "expires_at")
# Only rows with a lifetime are indexed: a restart deletes the expired ones by a range.
MEMORIES_EXPIRES_INDEX = (
    "CREATE INDEX IF NOT EXISTS memories_expires ON memories (bank, expires_at)"
    " WHERE expires_at IS NOT NULL"
)
MEMORIES_SEQ_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS memories_bank_seq ON memories (bank, seq)"
MEMORIES_INDEXES = (MEMORIES_SEQ_INDEX, MEMORIES_EXPIRES_INDEX)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS banks ("
    " name TEXT PRIMARY KEY, config TEXT NOT NULL, created_at TEXT NOT NULL,"
    " ord INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,"
    " generation INTEGER NOT NULL DEFAULT 0)",
    MEMORIES.format(table="memories", times=TIMES),
    *MEMORIES_INDEXES,
)

# sqlite error name prefix → what an operator should read (no SQL text, no paths).
_REASONS = (
    ("SQLITE_FULL", "disk full"),
    ("SQLITE_READONLY", "database is read-only"),
    ("SQLITE_IOERR", "I/O error"),
    ("SQLITE_BUSY", "database is locked by another process"),
    ("SQLITE_LOCKED", "database is locked"),
    ("SQLITE_CORRUPT", "database file is corrupt"),
    ("SQLITE_NOTADB", "file is not a database"),
    ("SQLITE_CANTOPEN", "cannot open database file"),
    ("SQLITE_PERM", "permission denied"),
    ("SQLITE_NOMEM", "out of memory"),
)


def storage_error(op: str, exc: BaseException) -> StorageError:
    """The StorageError for a failed SQLite call: names the failure, never SQL text."""
    name = sqlite_error_name(exc) or type(exc).__name__
    reason = next((text for prefix, text in _REASONS if name.startswith(prefix)), "database error")
    return StorageError(f"storage {op} failed: {reason}", {"operation": op, "sqlite_error": name})


def sqlite_error_name(exc: BaseException) -> str:
    return getattr(exc, "sqlite_errorname", None) or ""


def is_not_writable(exc: BaseException) -> bool:
    """An error that means "this store may only be read" (then it is served read-only)."""
    return sqlite_error_name(exc).startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))


def pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def schema_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else str(row[0])


@contextmanager
def schema_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def create_if_fresh(conn: sqlite3.Connection) -> None:
    """Create the schema in a file that has none (only a fresh file is written here, so a
    read-only store still opens for reads)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if exists is not None:
        return
    with schema_transaction(conn):
        for stmt in _SCHEMA:
            conn.execute(stmt)
        conn.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")


def unsupported(version: str | None) -> StorageError:
    return StorageError(
        "storage open failed: unsupported schema version",
        {"operation": "open", "schema_version": version},
    )
