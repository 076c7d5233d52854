"""Schema version 4: the unique index of 64-bit id hashes keeps ids exact.

Keys are hashes, so two ids may share one (keys.py); these tests make that common by
folding every key into 3 values, and check that upserts replace by id, deletes delete
exactly the ids asked for, the `all_new` fast path still refuses a stored id, and a
version-3 store (indexed by (bank, id)) migrates to version 4 keeping everything.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from lam_engine.errors import StorageError
from lam_engine.store import SCHEMA_VERSION, Storage
from lam_engine.store.keys import IdKeys

T0 = "2025-11-25T14:00:00Z"


def _xi(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def _fold_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id gets one of 3 keys: nearly every batch collides.

    The fold is a fixed function of (bank, id), not of the store's random secret, so which
    ids share a key is the same on every run (n0, n1, n2 take keys 0, 1, 2 in bank "b").
    """

    def fold(bank: str, i: str) -> int:
        return sum(f"{bank}/{i}".encode()) % 3

    def few_keys(self: IdKeys, bank: str, ids: Sequence[str]) -> list[int]:
        return [fold(bank, i) for i in ids]

    monkeypatch.setattr(IdKeys, "keys", few_keys)
    monkeypatch.setattr(IdKeys, "key", lambda self, bank, i: fold(bank, i))


@pytest.fixture
def colliding(monkeypatch: pytest.MonkeyPatch) -> None:
    _fold_keys(monkeypatch)


def _model_check(s: Storage, bank: str, want: dict[str, bytes]) -> None:
    loaded = s.load(bank)
    assert loaded.vectors is not None
    got = {i: v.tobytes() for i, v in zip(loaded.ids, loaded.vectors, strict=True)}
    assert len(loaded.ids) == len(got) == len(want) and got == want


def test_upsert_and_delete_stay_exact_when_ids_share_keys(tmp_path: Path, colliding: None):
    s = Storage(tmp_path / "lam.sqlite3")
    s.create_bank("b", {"dim": 2}, T0)
    want: dict[str, bytes] = {}
    rng = np.random.default_rng(1)
    seq_of: dict[str, int] = {}
    for step in range(40):
        ids = sorted({f"m{k}" for k in rng.integers(0, 30, size=int(rng.integers(1, 8)))})
        if step % 3 == 2:
            deleted = s.delete("b", [*ids, "never"])
            assert deleted == sum(i in want for i in ids)
            for i in ids:
                want.pop(i, None)
        else:
            x = _xi(len(ids), 2, step)
            seqs = s.upsert("b", ids, x, [None] * len(ids))
            for i, q, v in zip(ids, seqs, x, strict=True):
                assert seq_of.setdefault(i, q) == q or i not in want  # a replace keeps its seq
                seq_of[i] = q
                want[i] = v.tobytes()
        _model_check(s, "b", want)
    check = s._conn.execute("PRAGMA integrity_check").fetchone()[0]
    assert check == "ok"
    s.close()
    s = Storage(tmp_path / "lam.sqlite3")
    _model_check(s, "b", want)
    s.close()


def test_all_new_with_a_shared_key_is_spilled_and_a_stored_id_refused(
    tmp_path: Path, colliding: None
):
    s = Storage(tmp_path / "lam.sqlite3")
    s.create_bank("b", {"dim": 2}, T0)
    ids = [f"n{i}" for i in range(10)]  # 10 ids on 3 keys: the fast path must fall back
    assert s.upsert("b", ids, _xi(10, 2), [None] * 10, all_new=True) == list(range(10))
    spilled = s._conn.execute("SELECT COUNT(*) FROM memories WHERE key IS NULL").fetchone()[0]
    assert spilled == 7
    generation = s.generation("b")
    for stored in ids:  # whether it holds its key or is spilled, a stored id is refused
        with pytest.raises(StorageError):
            s.upsert("b", ["fresh", stored], _xi(2, 2, 9), [None, None], all_new=True)
    assert s.generation("b") == generation and s.load("b").ids == ids
    # Deleting the holders of the keys promotes spilled rows into them: still refused.
    s.delete("b", ids[:3])
    for stored in ids[3:]:
        with pytest.raises(StorageError):
            s.upsert("b", [stored], _xi(1, 2, 9), [None], all_new=True)
    assert s.upsert("b", ids[:4], _xi(4, 2, 5), [None] * 4) == [10, 11, 12, 3]
    assert s.load("b").ids == ids[3:] + ids[:3]
    s.close()


def test_banks_sharing_keys_stay_apart_through_deletes_and_replaces(
    tmp_path: Path, colliding: None
):
    s = Storage(tmp_path / "lam.sqlite3")
    ids = [f"m{i}" for i in range(6)]  # the same ids in both banks, on 3 keys
    for bank in ("a", "b", "c"):
        s.create_bank(bank, {"dim": 2}, T0)
        assert s.upsert(bank, ids, _xi(6, 2, ord(bank)), [None] * 6, all_new=True) == list(range(6))
    s.delete_bank("a")  # frees slots: rows of b and c move into them
    s.replace_bank("c", {"dim": 2}, T0, ids[:2], _xi(2, 2, 7), [None, None])
    for stored in ids:
        with pytest.raises(StorageError):
            s.upsert("b", [stored], _xi(1, 2, 9), [None], all_new=True)
    assert s.upsert("b", ids[::-1], _xi(6, 2, 3), [None] * 6) == list(range(6))[::-1]
    loaded = s.load("b")
    assert loaded.ids == ids and loaded.vectors is not None
    assert loaded.vectors.tobytes() == _xi(6, 2, 3)[::-1].tobytes()
    assert s.load("c").ids == ids[:2] and s.delete("c", ids) == 2 and s.load("b").ids == ids
    assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.close()


def test_keys_are_per_store_and_per_bank(tmp_path: Path):
    a, b = Storage(tmp_path / "a.sqlite3"), Storage(tmp_path / "b.sqlite3")
    try:
        ka, kb = a._id_keys, b._id_keys
        assert ka.keys("x", ["m1"]) != kb.keys("x", ["m1"])  # each store draws its secret
        assert ka.keys("x", ["m1"]) != ka.keys("y", ["m1"])
        assert ka.keys("ab", ["c"]) != ka.keys("a", ["bc"])  # length-prefixed bank
        assert ka.keys("x", ["m1", "m2"]) == [ka.key("x", "m1"), ka.key("x", "m2")]
    finally:
        a.close()
        b.close()


# -- version 3 → 4 -------------------------------------------------------------------------

_V3_MEMORIES = (
    "CREATE TABLE memories (bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT)",
    "CREATE UNIQUE INDEX memories_bank_seq ON memories (bank, seq)",
    "CREATE UNIQUE INDEX memories_bank_id ON memories (bank, id)",
)


def downgrade_to_v3(db: Path) -> None:
    """Rewrite a current store as version 3 left it ((bank, id) index, no key, no secret)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE memories RENAME TO memories_new")
    conn.execute("DROP INDEX memories_key")
    conn.execute("DROP INDEX memories_bank_seq")
    for stmt in _V3_MEMORIES:
        conn.execute(stmt)
    conn.execute(
        "INSERT INTO memories SELECT bank, seq, id, vector, payload FROM memories_new"
        " ORDER BY rowid"
    )
    conn.execute("DROP TABLE memories_new")
    conn.execute("DELETE FROM meta WHERE key = 'id_key'")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.execute("COMMIT")
    conn.execute("VACUUM")
    conn.close()


@pytest.mark.parametrize("collide", [False, True], ids=["plain", "shared-keys"])
def test_version_3_store_is_migrated_to_4_keeping_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collide: bool
):
    db = tmp_path / "lam.sqlite3"
    s = Storage(db)
    s.create_bank("a", {"dim": 3}, T0)
    s.create_bank("b", {"dim": 3}, T0)
    for k in range(4):
        s.upsert("a", [f"a{k}-{i}" for i in range(25)], _xi(25, 3, k), [{"k": k}] * 25)
        s.upsert("b", [f"b{k}-{i}" for i in range(5)], _xi(5, 3, 9 + k), [None] * 5)
    s.delete("a", ["a1-3", "a2-0"])
    s.upsert("a", ["a0-1"], _xi(1, 3, 77), [None])
    state = {n: (s.load(n), s.generation(n)) for n in ("a", "b")}
    s.close()
    downgrade_to_v3(db)
    if collide:
        _fold_keys(monkeypatch)
    s = Storage(db)
    try:
        assert s.schema_version == SCHEMA_VERSION == 5
        assert s.migration is not None and s.migration["from_version"] == 3
        for name, (want, generation) in state.items():
            got = s.load(name)
            assert got.ids == want.ids and got.seqs.tolist() == want.seqs.tolist()
            assert got.vectors is not None and want.vectors is not None
            assert got.vectors.tobytes() == want.vectors.tobytes()
            assert got.payloads == want.payloads and got.generation == generation
        # Upserts replace by id after the migration, shared keys or not.
        assert s.upsert("a", ["a3-24", "new"], _xi(2, 3, 5), [None, None]) == [
            int(state["a"][0].seqs[-1]),
            100,
        ]
        assert s.delete("b", [f"b0-{i}" for i in range(5)]) == 5
        with pytest.raises(StorageError):
            s.upsert("b", ["b1-0"], _xi(1, 3), [None], all_new=True)
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        s.close()
