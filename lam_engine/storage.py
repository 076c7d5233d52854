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

Layout (schema version 3)
    ``banks(name PK, config JSON, created_at, ord, next_seq, generation)``: ``ord`` keeps
    the creation order; ``next_seq`` is a per-bank counter, so a ``seq`` is never reused,
    even after deletes. ``memories(bank, seq, id, vector, payload)`` is an ordinary rowid
    table (rows appended in insertion order) with two unique indexes, ``(bank, seq)``
    (``load``: one index range scan in insertion order) and ``(bank, id)`` (upserts,
    deletes). ``vector`` is float32 little-endian bytes, ``payload`` JSON text or NULL.
    ``meta(key, value)`` holds ``schema_version`` and ``generation``, the store-wide write
    counter. New files use 16 KiB pages (``PAGE_SIZE``).

    Why not a table clustered on ``(bank, seq)`` (``WITHOUT ROWID``, versions 1 and 2):
    a vector row is 0.5-1.5 KB; a row beyond what such a page keeps locally (about 1 KB
    in 4 KiB pages) spills its tail into a mostly empty overflow page, so a d = 384 store
    took 3x the bytes of its vectors, and every batch wrote and fsync'ed all of them.
    Measured on this machine (200 000 x 384 float32, random content ids, batches of
    5 000, WAL, synchronous FULL; vectors/s, raw SQL; scroll: pages of 100 rows after a
    random seq cursor, per s):

    ============================  ======  ======  =======  ======  ======  ========
    layout                        insert  load    replace  delete  scroll  file
    ============================  ======  ======  =======  ======  ======  ========
    WITHOUT ROWID, 4 KiB (v2)     34k     318k    48k      26k     4.0k    1 049 MB
    rowid + 2 indexes, 4 KiB      58k     568k    112k     36k     7.6k    476 MB
    rowid + 2 indexes, 16 KiB     89k     774k    169k     37k     10.6k   384 MB
    ============================  ======  ======  =======  ======  ======  ========

    (``seq`` as the INTEGER PRIMARY KEY, encoding the bank in its high bits, measured the
    same within noise, and would have needed a bank number and renumbered keys.) At
    d = 128 the random ``(bank, id)`` index of content ids dominates and every layout
    stores about 50k/s.

Write generations
    Every committed write to a bank (create, replace, config change, an upsert or delete
    that changes rows) stamps the bank with a fresh ``generation``, taken from the
    store-wide counter in the same transaction. A value is never handed out twice in a
    store, not even to a bank deleted and created again under the same name: a file
    derived from a bank (the engine's saved prefilter index) that records the generation
    it was made at matches the bank exactly when the generations are equal.

Migration
    An older store is migrated to version 3 when opened writable, in ONE transaction:
    version 1 (before write generations) gets ``banks.generation`` (0 for every bank) and
    the counter; the memories are copied into the new table (``INSERT ... SELECT`` in
    (bank, seq) order), the old table dropped, the new one renamed and its indexes built.
    Seqs, ids, vectors, payloads and generations are kept exactly, so a saved prefilter
    index stays current. The store is switched to a rollback journal for the migration
    when no other connection has it open (in WAL mode the copy would pass through the WAL
    as well: 4x the store's size on disk at the peak instead of 3x), then VACUUMed with
    16 KiB pages: both steps are atomic (a crash rolls back to the state before the step)
    and the VACUUM, which is optional, runs only if the data dir (and SQLite's temp dir)
    can take it with room to spare; otherwise the store keeps its pages (4 KiB for every
    store made before version 3: inserts about 35 % slower) and a warning is logged. The
    migration itself needs about twice the store's size free and refuses to start
    otherwise (``StorageError``, nothing written). A store opened read-only is served as
    it is (a version-1 store then has no generations: ``generation`` is None).
    ``Storage.migration`` tells what was done at open.

Loading
    ``load`` reads a bank in one read transaction, in chunks of about
    ``LOAD_CHUNK_BYTES`` of vectors, into an array allocated once for the whole bank, or
    into a caller's ``VectorSink`` (the engine writes straight into its bank's device
    tensor, in the bank's dtype): the peak is the bank's own size, its ids and payloads
    as Python objects and one chunk, not a Python tuple per row plus float32 copies.

Payloads are JSON objects written with orjson (json as fallback for integers beyond
64 bits); as in orjson, a non-finite float inside a payload is stored as null.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol

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

SCHEMA_VERSION = 3
# Versions this code opens; older ones are migrated to SCHEMA_VERSION when writable.
_READABLE_VERSIONS = ("1", "2", "3")
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
PAGE_SIZE = 16384  # new files; a migrated store gets it from its VACUUM (module doc)
# The WAL is checkpointed into the store once it holds about this much (SQLite's default,
# 1000 pages, is 16 MiB in 16 KiB pages: a checkpoint, with its fsync, every other batch
# of 5 000 × 384; at 64 MiB a batch commits in 27 ms instead of 34), and truncated back to
# twice that after a bigger transaction.
WAL_CHECKPOINT_BYTES = 64 << 20
LOAD_CHUNK_BYTES = 8 << 20  # vector bytes per fetch of `load` (reused heap, not fresh mmaps)
_LOAD_CHUNK_ROWS = (1024, 65536)
_MIGRATE_RESERVE = 64 << 20  # left free after the (mandatory) migration's estimated peak
# A run of 19 ASCII digits (a JSON integer that may exceed 64 bits): a translate and a
# substring search, 15x faster than the regex \d{19} on a load's payload text.
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_NINETEEN_DIGITS = "0" * 19
_BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's lock
_IN_CHUNK = 500  # ids per "IN (...)" lookup, well under SQLite's bound-variable limit

log = logging.getLogger("lam.storage")

_MEMORIES = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT)"
)
_MEMORIES_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS memories_bank_seq ON memories (bank, seq)",
    "CREATE UNIQUE INDEX IF NOT EXISTS memories_bank_id ON memories (bank, id)",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS banks ("
    " name TEXT PRIMARY KEY, config TEXT NOT NULL, created_at TEXT NOT NULL,"
    " ord INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,"
    " generation INTEGER NOT NULL DEFAULT 0)",
    _MEMORIES.format(table="memories"),
    *_MEMORIES_INDEXES,
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
    vectors: np.ndarray | None  # (N, d) float32; None when they went to a VectorSink
    payloads: list[dict[str, Any] | None]
    generation: int | None = None  # the bank's write generation at this read (see module doc)


class VectorSink(Protocol):
    """Where `Storage.load` streams a bank's vectors (module doc, Loading)."""

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
    if _NINETEEN_DIGITS not in text.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _encode_payloads(payloads: Sequence[dict[str, Any] | None]) -> list[str | None]:
    out: list[str | None] = [None] * len(payloads)
    for k, p in enumerate(payloads):
        if p is None:
            continue
        if not isinstance(p, dict):
            raise InvalidParameterError("a payload must be a JSON object or null")
        out[k] = _dumps(p)
    return out


def _decode_payloads(bank: str, texts: Sequence[str]) -> list[Any]:
    """Payload texts of one load chunk ('null' for NULL) with a single parser call."""
    if texts.count("null") == len(texts):
        return [None] * len(texts)  # no payloads (e.g. stored from .npy): nothing to parse
    try:
        out = _loads("[" + ",".join(texts) + "]")
    except ValueError:
        out = None
    if not isinstance(out, list) or len(out) != len(texts):
        raise StorageError("storage load failed: corrupt payload", {"bank": bank})
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


def _sqlite_temp_dir() -> Path:
    """Where SQLite (unix) puts the temporary database of a VACUUM."""
    for name in (os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"),
                 "/var/tmp", "/usr/tmp", "/tmp"):  # fmt: skip
        if name and os.path.isdir(name) and os.access(name, os.W_OK | os.X_OK):
            return Path(name)
    return Path(tempfile.gettempdir())


def _free_bytes(path: Path) -> tuple[int, int, int] | None:
    """(free bytes, volume size, device id) of the volume of `path`, None if unknown."""
    try:
        usage = shutil.disk_usage(path)
        return usage.free, usage.total, os.stat(path).st_dev
    except OSError:
        return None


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
        # What opening did to an older store (module doc, Migration); None: nothing.
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
            name = getattr(exc, "sqlite_errorname", None) or ""
            if not name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
                raise _storage_error("open", exc) from exc
            self._conn = self._connect_read_only(target, exc)
            self.read_only = True

    def _connect(self, target: str, mode: str) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE … COMMIT).
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Takes effect on a new file only, so it must come before WAL and the first table.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {mode}")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: bulk inserts touch many pages
            self.schema_version = self._init_schema(conn, writable=True, target=target)
            page = self._pragma(conn, "page_size")  # known only now (a migration may change it)
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
        raise _storage_error("open", cause) from cause

    def _init_schema(self, conn: sqlite3.Connection, *, writable: bool, target: str) -> int:
        """Create a fresh store's schema or migrate an old one; returns the schema version."""
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if exists is None:
            # Only a fresh file is written to here, so a read-only store still opens for reads.
            with self._schema_transaction(conn):
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        version = self._schema_version(conn)
        if writable and version in _READABLE_VERSIONS and version != str(SCHEMA_VERSION):
            self._migrate(conn, target, version)
            version = self._schema_version(conn)
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

    # -- migration (module doc) ---------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection, target: str, version: str) -> None:
        """Bring a version-1 or -2 store to SCHEMA_VERSION: one transaction, then a VACUUM."""
        t0 = time.perf_counter()
        on_disk = target != ":memory:"
        store_bytes = self._pragma(conn, "page_count") * self._pragma(conn, "page_size")
        if on_disk:
            # Peak: the new table (at most the old one's size) plus the journal.
            self._require_space(Path(target).parent, 2 * store_bytes + _MIGRATE_RESERVE)
        # A rollback journal keeps the copy out of the WAL (needs the store to ourselves).
        rollback = on_disk and self._journal_mode(conn, "delete")
        report: dict[str, Any] = {"from_version": int(version), "to_version": SCHEMA_VERSION,
                                  "store_bytes_before": store_bytes}  # fmt: skip
        try:
            try:
                with self._schema_transaction(conn):
                    # Re-read under the write lock: another process may have migrated meanwhile.
                    current = self._schema_version(conn)
                    done = current in ("1", "2")
                    if current == "1":
                        self._migrate_1_to_2(conn)
                        current = "2"
                    if current == "2":
                        self._migrate_2_to_3(conn)
            except sqlite3.Error as exc:
                name = getattr(exc, "sqlite_errorname", None) or ""
                if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
                    raise  # a store we may not write: served read-only, unmigrated
                raise _storage_error("migrate", exc) from exc
            if not done:
                return
            report["migrate_seconds"] = round(time.perf_counter() - t0, 3)
            report["vacuum"] = self._vacuum(conn, Path(target)) if rollback else "not tried"
        finally:
            if rollback and not self._journal_mode(conn, "wal"):
                log.warning("store left in rollback-journal mode; WAL is set again at next open")
            elif on_disk and not rollback:
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # give the copy's WAL back
        report["page_size"] = self._pragma(conn, "page_size")
        report["store_bytes_after"] = self._pragma(conn, "page_count") * report["page_size"]
        report["seconds"] = round(time.perf_counter() - t0, 3)
        self.migration = report
        log.info("store migrated from schema version %s to %s: %s", version, SCHEMA_VERSION,
                 report)  # fmt: skip

    @staticmethod
    def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
        """Version 2 adds write generations: banks.generation (0) and the meta counter."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(banks)")}
        if "generation" not in columns:
            conn.execute("ALTER TABLE banks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

    @staticmethod
    def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
        """Version 3 stores memories in a rowid table (module doc, Layout)."""
        conn.execute("DROP TABLE IF EXISTS memories_v3")
        conn.execute(_MEMORIES.format(table="memories_v3"))
        conn.execute(
            "INSERT INTO memories_v3 (bank, seq, id, vector, payload)"
            " SELECT bank, seq, id, vector, payload FROM memories ORDER BY bank, seq"
        )
        conn.execute("DROP TABLE memories")  # and its index memories_bank_id
        conn.execute("ALTER TABLE memories_v3 RENAME TO memories")
        for stmt in _MEMORIES_INDEXES:
            conn.execute(stmt)
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")

    def _vacuum(self, conn: sqlite3.Connection, db: Path) -> str:
        """Compact the migrated store into PAGE_SIZE pages if there is room; returns what happened.

        SQLite writes the compacted copy to its temp dir, then copies it back under a
        rollback journal (atomic). Room: the copy and the journal, each about the size of
        the live pages, plus max(5 % of the volume, 256 MiB) on each volume.
        """
        page = self._pragma(conn, "page_size")
        live = (self._pragma(conn, "page_count") - self._pragma(conn, "freelist_count")) * page
        need: dict[int, int] = {}
        volumes = []
        for where in (db.parent, _sqlite_temp_dir()):
            info = _free_bytes(where)
            if info is None:
                return "skipped: free space unknown"
            free, total, dev = info
            need[dev] = need.get(dev, 0) + live
            volumes.append((where, free, total, dev))
        for where, free, total, dev in volumes:
            reserve = max(256 << 20, total // 20)
            if free < need[dev] + reserve:
                log.warning(
                    "store migrated but not compacted (%d-byte pages kept, inserts slower): "
                    "%s has %.1f GB free, the VACUUM needs %.1f GB",
                    page, where, free / 1e9, (need[dev] + reserve) / 1e9,
                )  # fmt: skip
                return "skipped: not enough disk space"
        t0 = time.perf_counter()
        try:
            conn.execute(f"PRAGMA page_size = {max(page, PAGE_SIZE)}")
            conn.execute("VACUUM")
        except sqlite3.Error as exc:
            log.warning("store migrated but not compacted: VACUUM failed (%s)", exc)
            return "failed"
        return f"done in {time.perf_counter() - t0:.1f} s"

    @staticmethod
    def _pragma(conn: sqlite3.Connection, name: str) -> int:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])

    @staticmethod
    def _journal_mode(conn: sqlite3.Connection, mode: str) -> bool:
        """Switch the journal mode; False if SQLite refused (e.g. another connection is open)."""
        conn.execute("PRAGMA busy_timeout = 0")  # leaving WAL needs the store to ourselves
        try:
            row = conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()
        except sqlite3.Error:
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return row is not None and str(row[0]).lower() == mode

    @staticmethod
    def _require_space(directory: Path, needed: int) -> None:
        info = _free_bytes(directory)
        if info is not None and info[0] < needed:
            raise StorageError(
                "storage migrate failed: not enough disk space to migrate the store",
                {"operation": "migrate", "free_bytes": info[0], "needed_bytes": needed},
            )

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

    @staticmethod
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

    def _insert_rows(
        self,
        conn: sqlite3.Connection,
        bank: str,
        next_seq: int,
        ids: list[str],
        blobs: list[bytes],
        payloads: list[str | None],
        *,
        all_new: bool = False,
    ) -> list[int]:
        # A bank that never held a row (next_seq 0) has no ids to look up either.
        existing = {} if all_new or not next_seq else self._existing_rows(conn, bank, ids)
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

    def upsert(
        self,
        bank: str,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
        *,
        all_new: bool = False,
    ) -> list[int]:
        """Store a batch in one transaction; returns each id's seq (a replaced id keeps its own).

        `all_new`: the caller knows that the bank holds none of the ids (the engine keeps
        every id in memory), so they are not looked up first. Should one be stored after
        all, its unique index refuses it and the whole batch is rolled back (StorageError).
        """
        ids, blobs, texts, d = self._prepare(ids, vectors, payloads)
        with self._write("upsert") as conn:
            config, next_seq = self._bank_row(conn, bank)
            if not ids:
                return []
            self._check_dim(config, d)
            seqs = self._insert_rows(conn, bank, next_seq, ids, blobs, texts, all_new=all_new)
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

    def load(self, bank: str, sink: VectorSink | None = None) -> LoadedBank:
        """Every memory of a bank in seq order (module doc, Loading).

        Without `sink` the vectors come back as one float32 array; with one, they are
        written to it and `LoadedBank.vectors` is None.
        """
        # Millions of fresh objects would trigger full garbage collections over and over
        # (none of them can be cyclic garbage): pausing the collector halves the load time.
        with self._read("load") as conn, _gc_paused():
            conn.execute("BEGIN")  # one snapshot: the row count and the rows agree
            try:
                return self._load(conn, bank, sink)
            finally:
                self._rollback()  # a read transaction: nothing to keep

    def _load(self, conn: sqlite3.Connection, bank: str, sink: VectorSink | None) -> LoadedBank:
        config, _ = self._bank_row(conn, bank)
        generation = self._read_generation(conn, bank)
        dim = _loads(config).get("dim")
        d = dim if isinstance(dim, int) and dim > 0 else None
        (n,) = conn.execute("SELECT COUNT(*) FROM memories WHERE bank = ?", (bank,)).fetchone()
        target = _ArraySink() if sink is None else sink
        seqs = np.empty(n, dtype=np.int64)
        ids: list[str] = []
        payloads: list[dict[str, Any] | None] = []
        rows_per_fetch = int(np.clip(LOAD_CHUNK_BYTES // (4 * (d or 128)), *_LOAD_CHUNK_ROWS))
        cursor = conn.execute(
            "SELECT seq, id, vector, COALESCE(payload, 'null') FROM memories"
            " WHERE bank = ? ORDER BY seq",
            (bank,),
        )
        start = 0
        while rows := cursor.fetchmany(rows_per_fetch):
            k = len(rows)
            chunk_seqs, chunk_ids, blobs, texts = zip(*rows, strict=True)
            del rows
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
            payloads.extend(_decode_payloads(bank, texts))
            start += k
        if start != n:
            raise StorageError("storage load failed: inconsistent row count", {"bank": bank})
        if n == 0:
            target.reserve(0, d or 0)
        return LoadedBank(
            ids=ids,
            seqs=seqs,
            vectors=target.array if isinstance(target, _ArraySink) else None,
            payloads=payloads,
            generation=generation,
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
