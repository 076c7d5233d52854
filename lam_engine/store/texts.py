"""The texts of a text bank's memories (API.md "Text memories"), beside the memories table.

``texts(bank, id, text)``, one row per memory stored as text, keyed by ``(bank, id)``. A
table of its own, created ``IF NOT EXISTS`` whatever the schema version, so it is purely
additive: the memories table and the schema version are untouched, and code that predates
text banks never reads it. Every write here runs inside the caller's transaction (the
upsert, delete, bank delete or replace of storage.py), so a memory and its text are
committed, or rolled back, together.

Keyed by the id, not the ``seq``: every write that touches a text knows its ids, and a
vector bank's delete then costs one index probe here (``_holds_texts``), not one per id.
Only text banks write here, so this index's batch rewrites (schema.py, "No id index") are
theirs alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

TEXTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS texts ("
    " bank TEXT NOT NULL, id TEXT NOT NULL, text TEXT NOT NULL,"
    " PRIMARY KEY (bank, id)) WITHOUT ROWID"
)


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create the table in a writable store that lacks it (any schema version)."""
    if not _exists(conn):
        conn.execute(TEXTS_TABLE)


def _exists(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'texts'"
    ).fetchone()
    return row is not None


def _holds_texts(conn: sqlite3.Connection, bank: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM texts WHERE bank = ? LIMIT 1", (bank,)).fetchone() is not None
    )


def write(
    conn: sqlite3.Connection, bank: str, ids: Sequence[str], texts: Sequence[str | None] | None
) -> None:
    """With an upsert of `ids`: their texts (an entry None: stored as a vector, so no text,
    even if an earlier version of that memory had one; `texts` None: no text changes)."""
    if texts is None:
        return
    rows = [(bank, i, t) for i, t in zip(ids, texts, strict=True) if t is not None]
    gone = [(bank, i) for i, t in zip(ids, texts, strict=True) if t is None]
    if gone and _holds_texts(conn, bank):
        conn.executemany("DELETE FROM texts WHERE bank = ? AND id = ?", gone)
    if rows:
        conn.executemany("INSERT OR REPLACE INTO texts (bank, id, text) VALUES (?, ?, ?)", rows)


def delete(conn: sqlite3.Connection, bank: str, ids: Sequence[str]) -> None:
    """With a delete of memories: their texts."""
    if ids and _holds_texts(conn, bank):
        conn.executemany("DELETE FROM texts WHERE bank = ? AND id = ?", [(bank, i) for i in ids])


def delete_orphans(conn: sqlite3.Connection, bank: str) -> None:
    """After memories were deleted by a condition (expired), not by id: their texts."""
    if _holds_texts(conn, bank):
        conn.execute(
            "DELETE FROM texts WHERE bank = ? AND id NOT IN"
            " (SELECT id FROM memories WHERE bank = ?)",
            (bank, bank),
        )


def drop_bank(conn: sqlite3.Connection, bank: str) -> None:
    """With a bank's delete (or replacement): all its texts."""
    conn.execute("DELETE FROM texts WHERE bank = ?", (bank,))


def read(conn: sqlite3.Connection, bank: str) -> dict[str, str]:
    """id → text of the bank's memories stored as text (a store without the table: none)."""
    if not _exists(conn):  # an older store served read-only
        return {}
    return dict(conn.execute("SELECT id, text FROM texts WHERE bank = ?", (bank,)).fetchall())
