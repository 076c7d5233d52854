"""Migration of an older store to schema version 6, and the VACUUM that compacts it.

An older store is migrated when opened writable, in ONE transaction (to 4, 5, then 6):
version 1 (before write generations) gets ``banks.generation`` (0 for every bank) and the
counter; the memories of version 1, 2 or 3 are copied into the new table (``INSERT ...
SELECT`` in (bank, seq) order), the old table dropped, the new one renamed and its
(bank, seq) index built; version 5 gets the forgetting columns; version 6 drops the id
index of versions 4-5 (schema.py, "No id index": O(1) but for freeing its pages). Seqs, ids,
vectors, payloads and generations are kept exactly, so a saved prefilter index stays
current. The store is switched to a rollback journal for the migration when no other
connection has it open (in WAL mode the copy would pass through the WAL as well: 4x the
store's size on disk at the peak instead of 3x), then VACUUMed with 16 KiB pages: both
steps are atomic (a crash rolls back to the state before the step) and the VACUUM, which
is optional, runs only if the data dir (and SQLite's temp dir) can take it and keep their
reserve (space.py); otherwise the store keeps its pages (4 KiB for every store made before
version 3: inserts about 35 % slower) and a warning is logged. The migration itself needs
about twice the store's size free and refuses to start otherwise (``StorageError``,
nothing written). A store opened read-only is served as it is (a version-1 store then
has no generations: ``generation`` is None). ``Storage.migration`` tells what was done.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from ..errors import StorageError
from . import space
from .schema import (
    BUSY_TIMEOUT_MS,
    MEMORIES,
    MEMORIES_EXPIRES_INDEX,
    MEMORIES_SEQ_INDEX,
    PAGE_SIZE,
    SCHEMA_VERSION,
    TIME_COLUMNS,
    TIMES,
    is_not_writable,
    pragma,
    schema_transaction,
    schema_version,
    storage_error,
)

# Versions whose memories are copied into a new table (the rest migrate in place).
_COPIED = ("1", "2", "3")
MIGRATE_RESERVE = 64 << 20  # left free after the (mandatory) migration's estimated peak

log = logging.getLogger("lam.storage")


def migrate(conn: sqlite3.Connection, target: str, version: str) -> dict[str, Any] | None:
    """Bring a version-1 to -5 store to SCHEMA_VERSION: one transaction, then a VACUUM
    (after a copy of the memories, versions 1-3, only).

    Returns what was done, or None when another process had migrated it meanwhile.
    """
    t0 = time.perf_counter()
    on_disk = target != ":memory:"
    store_bytes = pragma(conn, "page_count") * pragma(conn, "page_size")
    copies = on_disk and version in _COPIED
    if copies:
        # Peak (a copy of the memories): the new table (at most the old one's) + the journal.
        _require_space(Path(target).parent, 2 * store_bytes + MIGRATE_RESERVE)
    # A rollback journal keeps the copy out of the WAL (needs the store to ourselves).
    rollback = copies and journal_mode(conn, "delete")
    report: dict[str, Any] = {"from_version": int(version), "to_version": SCHEMA_VERSION,
                              "store_bytes_before": store_bytes}  # fmt: skip
    try:
        try:
            with schema_transaction(conn):
                # Re-read under the write lock: another process may have migrated meanwhile.
                current = schema_version(conn)
                done = current in ("1", "2", "3", "4", "5")
                copied = current in _COPIED  # only a copy leaves room to compact
                if current == "1":
                    _migrate_1_to_2(conn)
                    current = "2"
                if current in ("2", "3"):
                    _migrate_to_4(conn)
                    current = "4"
                if current == "4":
                    _migrate_4_to_5(conn)
                    current = "5"
                if current == "5":
                    _migrate_5_to_6(conn)
        except sqlite3.Error as exc:
            if is_not_writable(exc):
                raise  # a store we may not write: served read-only, unmigrated
            raise storage_error("migrate", exc) from exc
        if not done:
            return None
        report["migrate_seconds"] = round(time.perf_counter() - t0, 3)
        if not copied:
            report["vacuum"] = "not needed"
        else:
            report["vacuum"] = _vacuum(conn, Path(target)) if rollback else "not tried"
    finally:
        if rollback and not journal_mode(conn, "wal"):
            log.warning("store left in rollback-journal mode; WAL is set again at next open")
        elif on_disk and not rollback:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # give the copy's WAL back
    report["page_size"] = pragma(conn, "page_size")
    report["store_bytes_after"] = pragma(conn, "page_count") * report["page_size"]
    report["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("store migrated from schema version %s to %s: %s", version, SCHEMA_VERSION,
             report)  # fmt: skip
    return report


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 2 adds write generations: banks.generation (0) and the meta counter."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(banks)")}
    if "generation" not in columns:
        conn.execute("ALTER TABLE banks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    """Version 4: memories in a rowid table with the (bank, seq) index (schema.py, Layout).

    Versions 2 (clustered on (bank, seq)) and 3 (indexed by (bank, id)) are copied alike.
    Version 4 also indexed a hash of each id; version 6 dropped that index, so the copy
    leaves ``key`` NULL and builds no id index.
    """
    conn.execute("DROP TABLE IF EXISTS memories_v4")
    conn.execute(MEMORIES.format(table="memories_v4", times=""))
    conn.execute(
        "INSERT INTO memories_v4 (bank, seq, id, vector, payload)"
        " SELECT bank, seq, id, vector, payload FROM memories ORDER BY bank, seq"
    )
    conn.execute("DROP TABLE memories")  # and its indexes
    conn.execute("ALTER TABLE memories_v4 RENAME TO memories")
    conn.execute(MEMORIES_SEQ_INDEX)
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Version 5: the forgetting columns (schema.TIMES), NULL for every row stored before.

    ALTER TABLE ADD COLUMN changes the schema only (no row is rewritten): O(1) whatever the
    store's size. Old rows read stored_at as meta.legacy_stored_at, the migration's time.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(memories)")}
    for column, decl in zip(TIME_COLUMNS, TIMES.split(",")[1:], strict=True):
        if column not in columns:
            conn.execute(f"ALTER TABLE memories ADD COLUMN {decl.strip()}")
    conn.execute(MEMORIES_EXPIRES_INDEX)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('legacy_stored_at', ?)", (repr(time.time()),))
    conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")


def _migrate_5_to_6(conn: sqlite3.Connection) -> None:
    """Version 6: no id index (schema.py, "No id index"); its hashes' secret goes too."""
    conn.execute("DROP INDEX IF EXISTS memories_key")
    conn.execute("DELETE FROM meta WHERE key = 'id_key'")
    conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def _vacuum(conn: sqlite3.Connection, db: Path) -> str:
    """Compact the migrated store into PAGE_SIZE pages if there is room; returns what happened.

    SQLite writes the compacted copy to its temp dir, then copies it back under a
    rollback journal (atomic): the copy and the journal, each about the size of the live
    pages, must fit beside the reserve of each volume.
    """
    page = pragma(conn, "page_size")
    live = (pragma(conn, "page_count") - pragma(conn, "freelist_count")) * page
    room = space.room_for([(db.parent, live), (space.sqlite_temp_dir(), live)])
    if room.ok is None:
        return "skipped: free space unknown"
    if not room.ok:
        log.warning(
            "store migrated but not compacted (%d-byte pages kept, inserts slower): "
            "%s has %.1f GB free, the VACUUM needs %.1f GB",
            page, room.where, room.free / 1e9, room.needed / 1e9,
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


def journal_mode(conn: sqlite3.Connection, mode: str) -> bool:
    """Switch the journal mode; False if SQLite refused (e.g. another connection is open)."""
    conn.execute("PRAGMA busy_timeout = 0")  # leaving WAL needs the store to ourselves
    try:
        row = conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()
    except sqlite3.Error:
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return row is not None and str(row[0]).lower() == mode


def _require_space(directory: Path, needed: int) -> None:
    info = space.free_bytes(directory)
    if info is not None and info[0] < needed:
        raise StorageError(
            "storage migrate failed: not enough disk space to migrate the store",
            {"operation": "migrate", "free_bytes": info[0], "needed_bytes": needed},
        )
