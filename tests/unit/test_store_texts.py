"""The store's texts table (lam_engine/store/texts.py): written, deleted and rolled back with
its memories, read back in the load, carried by snapshots. No model needed."""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lam_engine.errors import SnapshotFormatError, StorageError
from lam_engine.store import Storage
from lam_engine.store import snapshot as snapshot_io

CONFIG = {"dim": 2, "embedder": {"model": "all-MiniLM-L6-v2"}}


def xi(n: int) -> np.ndarray:
    return np.arange(2 * n, dtype=np.float32).reshape(n, 2) + 1  # (n, 2)


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    s = Storage(tmp_path / "lam.sqlite3")
    s.create_bank("t", CONFIG, "2026-01-01T00:00:00Z")
    s.create_bank("u", CONFIG, "2026-01-01T00:00:00Z")
    return s


def test_texts_follow_their_memories(store: Storage, tmp_path: Path) -> None:
    store.upsert("t", ["a", "b", "c"], xi(3), [None] * 3, memory_texts=["A", "B", None])
    store.upsert("u", ["a"], xi(1), [None], memory_texts=["other bank"])
    assert store.load("t").texts == {"a": "A", "b": "B"}
    # A vector replacing a text memory drops its text; a new text replaces the old one.
    store.upsert("t", ["a", "c"], xi(2), [None] * 2, memory_texts=[None, "C"])
    assert store.load("t").texts == {"b": "B", "c": "C"}
    store.upsert("t", ["b"], xi(1), [None])  # no texts given: no text changes
    assert store.load("t").texts == {"b": "B", "c": "C"}
    assert store.delete("t", ["b", "zz"]) == 1
    assert store.load("t").texts == {"c": "C"}
    store.close()
    again = Storage(tmp_path / "lam.sqlite3")  # durable
    assert again.load("t").texts == {"c": "C"} and again.load("u").texts == {"a": "other bank"}
    again.delete_bank("t")
    assert again.load("u").texts == {"a": "other bank"}
    conn = sqlite3.connect(tmp_path / "lam.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM texts WHERE bank = 't'").fetchone() == (0,)
    conn.close()
    again.close()


def test_a_failed_batch_writes_no_text(store: Storage) -> None:
    store.upsert("t", ["a"], xi(1), [None], memory_texts=["A"])
    # A wrong map ("a" is at seq 0): the replace finds no row, the transaction rolls back.
    with pytest.raises(StorageError):
        store.upsert("t", ["b", "a"], xi(2), [None] * 2, stored={"a": 5}, memory_texts=["B", "X"])
    assert store.load("t").texts == {"a": "A"} and store.load("t").ids == ["a"]


def test_replace_bank_replaces_texts(store: Storage) -> None:
    store.upsert("t", ["a", "b"], xi(2), [None] * 2, memory_texts=["A", "B"])
    store.replace_bank(
        "t", CONFIG, "2026-01-02T00:00:00Z", ["b"], xi(1), [None], memory_texts=["new B"]
    )
    assert store.load("t").texts == {"b": "new B"}


def test_snapshot_carries_texts() -> None:
    buf = io.BytesIO()
    kw = {"name": "t", "config": CONFIG, "created_at": "x", "ids": ["a", "b"], "vectors": xi(2)}
    snapshot_io.write_snapshot(buf, **kw, payloads=[None, {"k": 1}], texts=["A", None])
    buf.seek(0)
    snap = snapshot_io.read_snapshot(buf)
    assert snap.texts == ["A", None] and snap.ids == ["a", "b"]
    plain = io.BytesIO()  # a vector bank's snapshot has no texts field at all
    snapshot_io.write_snapshot(plain, **kw, payloads=[None, None], texts=None)
    plain.seek(0)
    assert snapshot_io.read_snapshot(plain).texts is None
    for texts in (["A", 7], ["A"]):  # not a string or null; not one per memory
        with pytest.raises(SnapshotFormatError, match="texts"):
            snapshot_io.read_snapshot(io.BytesIO(_with_texts(plain.getvalue(), texts)))


def _with_texts(snapshot: bytes, texts: list[object]) -> bytes:
    """The snapshot with its manifest's "texts" set to `texts` (vectors unchanged)."""
    src = zipfile.ZipFile(io.BytesIO(snapshot))
    manifest = json.loads(src.read("manifest.json"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps({**manifest, "texts": texts}))
        zf.writestr("vectors.npy", src.read("vectors.npy"))
    return out.getvalue()
