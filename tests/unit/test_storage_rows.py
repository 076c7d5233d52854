"""Schema version 6: no id index; the caller's map of stored ids (or the store's own
read of them) decides what is replaced, and a wrong map changes nothing.

A model (a dict per bank) runs random upserts, replaces, deletes and reinforcements on two
banks sharing ids, once with the engine's kind of map (`stored=`) and once with the
store reading its ids itself, and both must leave exactly the model's rows. Then: a wrong
map is refused whole, version-5 and version-3 stores migrate to version 6, and the engine's
own map (one bank and a sharded one) keeps the store exact through random writes and a
restart.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lam_engine.errors import StorageError
from lam_engine.store import SCHEMA_VERSION, Storage

T0 = "2025-11-25T14:00:00Z"


def _xi(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def _indexes(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'memories'"
            " AND sql IS NOT NULL ORDER BY name"
        )
        return [r[0] for r in rows]
    finally:
        conn.close()


def _check(s: Storage, bank: str, want: dict[str, tuple[int, bytes]]) -> None:
    """The bank holds exactly the model's (id → (seq, vector)) rows, in seq order."""
    loaded = s.load(bank)
    assert loaded.vectors is not None
    got = {
        i: (int(q), v.tobytes())
        for i, q, v in zip(loaded.ids, loaded.seqs, loaded.vectors, strict=True)
    }
    assert len(loaded.ids) == len(got) == len(want) and got == want
    assert loaded.seqs.tolist() == sorted(loaded.seqs.tolist())


@pytest.mark.parametrize("told", [True, False], ids=["caller-map", "store-reads"])
@pytest.mark.parametrize("seed", range(4))
def test_random_writes_match_a_model(tmp_path: Path, seed: int, told: bool) -> None:
    rng = np.random.default_rng(seed)
    s = Storage(tmp_path / "lam.sqlite3")
    model: dict[str, dict[str, tuple[int, bytes]]] = {"a": {}, "b": {}}
    next_seq = {"a": 0, "b": 0}
    for bank in model:
        s.create_bank(bank, {"dim": 3}, T0)
    universe = [f"m{i}" for i in range(40)]  # the same ids in both banks
    for step in range(30):
        bank = "ab"[int(rng.integers(2))]
        held = model[bank]
        ids = list(rng.choice(universe, size=int(rng.integers(1, 12)), replace=False))
        op = rng.random()
        stored = {i: held[i][0] for i in ids if i in held}
        if op < 0.6:
            xi = _xi(len(ids), 3, 1000 * seed + step)
            kw = {"stored": stored} if told else {}
            seqs = s.upsert(bank, ids, xi, [None] * len(ids), **kw)
            for i, q, v in zip(ids, seqs, xi, strict=True):
                if i in held:
                    assert q == held[i][0]  # a replaced id keeps its seq
                else:
                    assert q == next_seq[bank]
                    next_seq[bank] += 1
                held[i] = (q, v.tobytes())
        elif op < 0.85:
            n = s.delete(bank, ids, stored if told else None)
            assert n == len(stored)
            for i in stored:
                del held[i]
        else:
            n = s.reinforce(bank, ids, 1.7e9 + step, 2.0, stored if told else None)
            assert n == len(stored)
        _check(s, bank, held)
    s.close()
    s = Storage(tmp_path / "lam.sqlite3")  # and after a reopen
    for bank, held in model.items():
        _check(s, bank, held)
    s.close()


@pytest.mark.parametrize(
    "stored",
    [
        {"y": 0},  # y is stored, but at seq 1
        {"w": 3},  # w is not stored at all
        {"y": 1, "x": 7},  # one right, one wrong
    ],
    ids=["wrong-seq", "not-stored", "partly-wrong"],
)
def test_a_wrong_map_refuses_the_batch_whole(tmp_path: Path, stored: dict[str, int]) -> None:
    s = Storage(tmp_path / "lam.sqlite3")
    s.create_bank("b", {"dim": 2}, T0)
    assert s.upsert("b", ["x", "y"], _xi(2, 2), [None, None], stored={}) == [0, 1]
    generation, before = s.generation("b"), s.load("b")
    ids = sorted({"w", "y", *stored})
    for call in (
        lambda: s.upsert("b", ids, _xi(len(ids), 2, 5), [None] * len(ids), stored=stored),
        lambda: s.delete("b", list(stored), stored),
        lambda: s.reinforce("b", list(stored), 1.7e9, 3.0, stored),
    ):
        with pytest.raises(StorageError, match="rows are not where"):
            call()
    after = s.load("b")
    assert s.generation("b") == generation and after.ids == before.ids
    assert after.vectors is not None and before.vectors is not None
    assert after.vectors.tobytes() == before.vectors.tobytes()
    assert after.times[0].tolist() == before.times[0].tolist()  # strengths unchanged
    s.close()


def test_version_5_store_is_migrated_to_6_in_place(tmp_path: Path) -> None:
    """Version 5's id index (64-bit hashes, collisions spilled as NULL) and secret go;
    nothing is copied (no VACUUM), rows and seqs stay, replaces keep working."""
    db = tmp_path / "lam.sqlite3"
    s = Storage(db)
    s.create_bank("b", {"dim": 3}, T0)
    s.upsert("b", [f"m{i}" for i in range(20)], _xi(20, 3), [{"i": i} for i in range(20)])
    s.delete("b", ["m3"])
    want = s.load("b")
    generation = s.generation("b")
    s.close()
    conn = sqlite3.connect(db, isolation_level=None)  # back to what version 5 left
    conn.execute("UPDATE memories SET key = CASE WHEN seq = 7 THEN NULL ELSE rowid * 7919 END")
    conn.execute("CREATE UNIQUE INDEX memories_key ON memories (key)")
    conn.execute("INSERT INTO meta VALUES ('id_key', '00112233445566778899aabbccddeeff')")
    conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    conn.close()
    s = Storage(db)
    try:
        assert s.schema_version == SCHEMA_VERSION == 6
        assert s.migration is not None and s.migration["from_version"] == 5
        assert s.migration["vacuum"] == "not needed"
        got = s.load("b")
        assert got.ids == want.ids and got.seqs.tolist() == want.seqs.tolist()
        assert got.vectors is not None and want.vectors is not None
        assert got.vectors.tobytes() == want.vectors.tobytes() and got.payloads == want.payloads
        assert got.generation == generation
        assert s.upsert("b", ["m7", "new"], _xi(2, 3, 1), [None, None]) == [7, 20]
        assert s.delete("b", ["m8", "m3"]) == 1
        meta = dict(s._conn.execute("SELECT key, value FROM meta").fetchall())
        assert "id_key" not in meta and meta["schema_version"] == "6"
    finally:
        s.close()
    assert _indexes(db) == ["memories_bank_seq", "memories_expires"]


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
    conn.execute("DROP INDEX IF EXISTS memories_key")
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


def test_version_3_store_is_migrated_to_6_keeping_everything(tmp_path: Path):
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
    s = Storage(db)
    try:
        assert s.schema_version == SCHEMA_VERSION == 6
        assert s.migration is not None and s.migration["from_version"] == 3
        for name, (want, generation) in state.items():
            got = s.load(name)
            assert got.ids == want.ids and got.seqs.tolist() == want.seqs.tolist()
            assert got.vectors is not None and want.vectors is not None
            assert got.vectors.tobytes() == want.vectors.tobytes()
            assert got.payloads == want.payloads and got.generation == generation
        # Upserts replace by id after the migration, whether the store or the caller tells.
        assert s.upsert("a", ["a3-24", "new"], _xi(2, 3, 5), [None, None]) == [
            int(state["a"][0].seqs[-1]),
            100,
        ]
        assert s.delete("b", [f"b0-{i}" for i in range(5)]) == 5
        with pytest.raises(StorageError):  # b1-0 is at seq 5, not 0: refused whole
            s.upsert("b", ["b1-0"], _xi(1, 3), [None], stored={"b1-0": 0})
        assert s.upsert("b", ["b1-0"], _xi(1, 3), [None], stored={"b1-0": 5}) == [5]
        assert _indexes(db) == ["memories_bank_seq", "memories_expires"]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        s.close()


@pytest.mark.parametrize("shards", [1, 3], ids=["one-bank", "sharded"])
def test_the_engines_map_keeps_the_store_exact_through_a_restart(
    tmp_path: Path, shards: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's id → seq map (a sharded bank's global view included) is what tells the
    store where a replaced, deleted or reinforced row is: after random writes and a
    restart the store holds exactly the engine's memories, and a replace keeps its seq."""
    from lam_engine import BankConfig, Engine
    from lam_engine.shards import bank as shard_bank

    rng = np.random.default_rng(7)
    universe = [f"m{i}" for i in range(60)]
    model: dict[str, bytes] = {}
    with Engine.open(tmp_path) as engine:
        engine.create_bank("b", BankConfig(dim=3, shards=shards))
        for step in range(25):
            ids = list(rng.choice(universe, size=int(rng.integers(1, 15)), replace=False))
            op = rng.random()
            if op < 0.6:
                xi = _xi(len(ids), 3, step)
                engine.upsert("b", xi, ids=ids)
                model.update({i: v.tobytes() for i, v in zip(ids, xi, strict=True)})
            elif op < 0.85:
                assert engine.delete_memories("b", ids) == sum(i in model for i in ids)
                for i in ids:
                    model.pop(i, None)
            else:
                assert engine.reinforce("b", ids, 2.0) == sum(i in model for i in ids)
        # Seqs come from each id's own shard: a write never builds the sharded bank's global
        # view (O(N) ids, made again after every write).
        views = []
        monkeypatch.setattr(shard_bank, "_Order", lambda parts: views.append(parts))
        held = sorted(model)[-3:]
        engine.delete_memories("b", held[:1])
        engine.upsert("b", _xi(2, 3, 98), ids=held[1:])  # a replace
        assert views == []
        monkeypatch.undo()
        model.pop(held[0])
        model.update({i: v.tobytes() for i, v in zip(held[1:], _xi(2, 3, 98), strict=True)})

    def stored() -> tuple[dict[str, bytes], dict[str, int]]:
        s = Storage(tmp_path / "lam.sqlite3")
        try:
            loaded = s.load("b")
        finally:
            s.close()
        assert loaded.vectors is not None and len(set(loaded.ids)) == len(loaded.ids)
        rows = {i: v.tobytes() for i, v in zip(loaded.ids, loaded.vectors, strict=True)}
        return rows, dict(zip(loaded.ids, loaded.seqs.tolist(), strict=True))

    rows, seqs = stored()
    assert rows == model and len(model) > 10
    kept = sorted(model)[:5]
    new = _xi(5, 3, 99)
    with Engine.open(tmp_path) as engine:  # the reopened engine's map still matches
        assert engine.bank_info("b").count == len(model)
        engine.upsert("b", new, ids=kept)
        engine.delete_memories("b", kept[:1])
    rows, after = stored()
    assert kept[0] not in rows
    assert all(rows[i] == v.tobytes() for i, v in zip(kept[1:], new[1:], strict=True))
    assert {i: after[i] for i in kept[1:]} == {i: seqs[i] for i in kept[1:]}
