"""Durable store of banks and memories: SQLite in WAL mode (the only module that speaks SQL).

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

Layout (schema version 2)
    ``banks(name PK, config JSON, created_at, ord, next_seq, generation)``: ``ord`` keeps
    the creation order; ``next_seq`` is a per-bank counter, so a ``seq`` is never reused,
    even after deletes. ``memories(bank, seq, id, vector, payload)`` is clustered on
    ``(bank, seq)`` (WITHOUT ROWID), so ``load`` is one range scan in insertion order; a
    unique index on ``(bank, id)`` serves upserts and deletes. ``vector`` is float32
    little-endian bytes, ``payload`` JSON text or NULL. ``meta(key, value)`` holds
    ``schema_version`` and ``generation``, the store-wide write counter.

Write generations
    Every committed write to a bank (create, replace, config change, an upsert or delete
    that changes rows) stamps the bank with a fresh ``generation``, taken from the
    store-wide counter in the same transaction. A value is never handed out twice in a
    store, not even to a bank deleted and created again under the same name: a file
    derived from a bank (the engine's saved prefilter index) that records the generation
    it was made at matches the bank exactly when the generations are equal.

Migration
    A version-1 store (before write generations) is migrated when opened writable: one
    transaction adds ``banks.generation`` (0 for every bank) and the counter. A version-1
    store opened read-only is served as it is; ``generation`` is then None.

Payloads are JSON objects written with orjson (json as fallback for integers beyond
64 bits); as in orjson, a non-finite float inside a payload is stored as null.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .errors import (
    BankExistsError,
    BankNotFoundError,
    DimensionMismatchError,
    DuplicateIdError,
    InvalidParameterError,
    StorageError,
)

SCHEMA_VERSION = 2
# Versions this code opens; older ones are migrated to SCHEMA_VERSION when writable.
_READABLE_VERSIONS = ("1", "2")
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
_LONG_DIGITS = re.compile(r"\d{19}")
_IN_CHUNK = 500  # ids per "IN (...)" lookup, well under SQLite's bound-variable limit

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS banks ("
    " name TEXT PRIMARY KEY, config TEXT NOT NULL, created_at TEXT NOT NULL,"
    " ord INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,"
    " generation INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS memories ("
    " bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT,"
    " PRIMARY KEY (bank, seq)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS memories_bank_id ON memories (bank, id)",
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


@dataclass(frozen=True)
class BankRecord:
    name: str
    config: dict[str, Any]
    created_at: str


@dataclass
class LoadedBank:
    """All memories of a bank in seq (insertion) order."""

    ids: list[str]
    seqs: np.ndarray  # (N,) int64
    vectors: np.ndarray  # (N, d) float32
    payloads: list[dict[str, Any] | None]
    generation: int | None = None  # the bank's write generation at this read (see module doc)


def _storage_error(op: str, exc: BaseException) -> StorageError:
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    reason = next((text for prefix, text in _REASONS if name.startswith(prefix)), "database error")
    return StorageError(f"storage {op} failed: {reason}", {"operation": op, "sqlite_error": name})


def _dumps(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits and lone surrogates; json takes both.
        try:
            return json.dumps(obj, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidParameterError(f"not JSON-serializable: {exc}") from None


def _loads(text: str) -> Any:
    # orjson turns integers beyond 64 bits into floats; such text goes to json, exact.
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _encode_payloads(payloads: Sequence[dict[str, Any] | None]) -> list[str | None]:
    out: list[str | None] = []
    for p in payloads:
        if p is None:
            out.append(None)
        elif isinstance(p, dict):
            out.append(_dumps(p))
        else:
            raise InvalidParameterError("a payload must be a JSON object or null")
    return out


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Storage:
    """SQLite store of banks and their memories; see the module docstring."""

    def __init__(self, path: Path | str, synchronous: str = "FULL") -> None:
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
            name = getattr(exc, "sqlite_errorname", None) or ""
            if not name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
                raise _storage_error("open", exc) from exc
            self._conn = self._connect_read_only(target, exc)
            self.read_only = True

    def _connect(self, target: str, mode: str) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE … COMMIT).
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {mode}")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: bulk inserts touch many pages
            self.schema_version = self._init_schema(conn, writable=True)
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
                self.schema_version = self._init_schema(conn, writable=False)
                return conn
            except sqlite3.Error:
                conn.close()
        raise _storage_error("open", cause) from cause

    @staticmethod
    def _init_schema(conn: sqlite3.Connection, *, writable: bool) -> int:
        """Create a fresh store's schema or migrate an old one; returns the schema version."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            # Only a fresh file is written to here, so a read-only store still opens for reads.
            with Storage._schema_transaction(conn):
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        version = Storage._schema_version(conn)
        if version == "1" and writable:
            with Storage._schema_transaction(conn):
                # Re-read under the write lock: another process may have migrated meanwhile.
                if Storage._schema_version(conn) == "1":
                    Storage._migrate_1_to_2(conn)
            version = Storage._schema_version(conn)
        if version not in _READABLE_VERSIONS or (writable and version != str(SCHEMA_VERSION)):
            raise StorageError(
                "storage open failed: unsupported schema version",
                {"operation": "open", "schema_version": version},
            )
        return int(version)

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    @contextmanager
    def _schema_transaction(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
        """Version 2 adds write generations: banks.generation (0) and the meta counter."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(banks)")}
        if "generation" not in columns:
            conn.execute("ALTER TABLE banks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

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
                raise _storage_error(op, exc) from exc

    @contextmanager
    def _write(self, op: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction; any failure rolls it back before propagating."""
        with self._lock:
            self._check_open(op)
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(op, exc) from exc
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
        return [BankRecord(name, _loads(config), created_at) for name, config, created_at in rows]

    def generation(self, bank: str) -> int | None:
        """The bank's write generation (module doc); None on a version-1 read-only store."""
        with self._read("generation") as conn:
            return self._read_generation(conn, bank)

    def create_bank(self, name: str, config: dict[str, Any], created_at: str) -> None:
        text = _dumps(config)
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
        text = _dumps(config)
        with self._write("update_bank_config") as conn:
            self._bank_row(conn, name)
            conn.execute("UPDATE banks SET config = ? WHERE name = ?", (text, name))
            self._bump_generation(conn, name)

    def delete_bank(self, name: str) -> None:
        with self._write("delete_bank") as conn:
            self._bank_row(conn, name)
            conn.execute("DELETE FROM memories WHERE bank = ?", (name,))
            conn.execute("DELETE FROM banks WHERE name = ?", (name,))

    # -- memories ---------------------------------------------------------------------

    @staticmethod
    def _prepare(
        ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any] | None]
    ) -> tuple[list[str], list[bytes], list[str | None], int]:
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
        return ids, blobs, _encode_payloads(payloads), int(xi.shape[1])

    @staticmethod
    def _check_dim(config_text: str, d: int) -> None:
        dim = _loads(config_text).get("dim")
        if isinstance(dim, int) and dim != d:
            raise DimensionMismatchError(
                f"vectors have dimension {d}, the bank has {dim}", {"expected": dim, "got": d}
            )

    def _existing_seqs(self, conn: sqlite3.Connection, bank: str, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT id, seq FROM memories WHERE bank = ? AND id IN ({marks})", (bank, *chunk)
            )
            found.update(rows)
        return found

    def _insert_rows(
        self,
        conn: sqlite3.Connection,
        bank: str,
        next_seq: int,
        ids: list[str],
        blobs: list[bytes],
        payloads: list[str | None],
    ) -> list[int]:
        existing = self._existing_seqs(conn, bank, ids)
        seqs: list[int] = []
        updates: list[tuple[bytes, str | None, str, str]] = []
        inserts: list[tuple[str, int, str, bytes, str | None]] = []
        for id_, blob, payload in zip(ids, blobs, payloads, strict=True):
            seq = existing.get(id_)
            if seq is None:
                seq = next_seq
                next_seq += 1
                inserts.append((bank, seq, id_, blob, payload))
            else:
                updates.append((blob, payload, bank, id_))
            seqs.append(seq)
        if updates:
            conn.executemany(
                "UPDATE memories SET vector = ?, payload = ? WHERE bank = ? AND id = ?", updates
            )
        if inserts:
            conn.executemany(
                "INSERT INTO memories (bank, seq, id, vector, payload) VALUES (?, ?, ?, ?, ?)",
                inserts,
            )
            conn.execute("UPDATE banks SET next_seq = ? WHERE name = ?", (next_seq, bank))
        return seqs

    def upsert(
        self,
        bank: str,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
    ) -> list[int]:
        """Store a batch in one transaction; returns each id's seq (a replaced id keeps its own)."""
        ids, blobs, texts, d = self._prepare(ids, vectors, payloads)
        with self._write("upsert") as conn:
            config, next_seq = self._bank_row(conn, bank)
            if not ids:
                return []
            self._check_dim(config, d)
            seqs = self._insert_rows(conn, bank, next_seq, ids, blobs, texts)
            self._bump_generation(conn, bank)
            return seqs

    def delete(self, bank: str, ids: list[str]) -> int:
        """Delete ids of a bank in one transaction; returns how many existed."""
        with self._write("delete") as conn:
            self._bank_row(conn, bank)
            before = conn.total_changes
            conn.executemany(
                "DELETE FROM memories WHERE bank = ? AND id = ?", [(bank, i) for i in ids]
            )
            deleted = conn.total_changes - before
            if deleted:
                self._bump_generation(conn, bank)
            return deleted

    def load(self, bank: str) -> LoadedBank:
        """Every memory of a bank in seq order, read with one query."""
        # Millions of fresh tuples would trigger full garbage collections over and over
        # (none of them can be cyclic garbage): pausing the collector halves the load time.
        with self._read("load") as conn, _gc_paused():
            config, _ = self._bank_row(conn, bank)
            generation = self._read_generation(conn, bank)
            rows = conn.execute(
                "SELECT seq, id, vector, COALESCE(payload, 'null') FROM memories"
                " WHERE bank = ? ORDER BY seq",
                (bank,),
            ).fetchall()
            loaded = self._unpack(bank, config, rows)
            loaded.generation = generation
            return loaded

    @staticmethod
    def _unpack(bank: str, config: str, rows: list[tuple]) -> LoadedBank:
        dim = _loads(config).get("dim")
        if not rows:
            d = dim if isinstance(dim, int) else 0
            return LoadedBank([], np.zeros(0, np.int64), np.zeros((0, d), np.float32), [])
        n = len(rows)
        seqs, ids, blobs, texts = zip(*rows, strict=True)
        row_bytes = set(map(len, blobs))
        if len(row_bytes) != 1 or next(iter(row_bytes)) % 4:
            raise StorageError("storage load failed: inconsistent vector sizes", {"bank": bank})
        d = next(iter(row_bytes)) // 4
        # A bytearray join gives a writable buffer: the vectors are not copied again.
        xi = np.frombuffer(bytearray().join(blobs), dtype="<f4").reshape(n, d)  # (N, d)
        # One JSON array for all payloads: a single parser call instead of N.
        try:
            payloads = _loads("[" + ",".join(texts) + "]")
        except ValueError as exc:
            raise StorageError("storage load failed: corrupt payload", {"bank": bank}) from exc
        return LoadedBank(
            ids=list(ids),
            seqs=np.fromiter(seqs, dtype=np.int64, count=n),
            vectors=xi.astype(np.float32, copy=False),
            payloads=payloads,
        )

    def replace_bank(
        self,
        name: str,
        config: dict[str, Any],
        created_at: str,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
    ) -> list[int]:
        """Drop the bank if it exists, create it afresh and fill it: one transaction."""
        ids, blobs, texts, d = self._prepare(ids, vectors, payloads)
        text = _dumps(config)
        if ids:
            self._check_dim(text, d)
        with self._write("replace_bank") as conn:
            conn.execute("DELETE FROM memories WHERE bank = ?", (name,))
            conn.execute("DELETE FROM banks WHERE name = ?", (name,))
            self._insert_bank(conn, name, text, created_at)
            return self._insert_rows(conn, name, 0, ids, blobs, texts)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise _storage_error("close", exc) from exc
