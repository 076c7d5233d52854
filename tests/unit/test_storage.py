"""lam_engine.store: durability, seq rules, atomic batches, failures as StorageError."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.errors import (
    BankExistsError,
    BankNotFoundError,
    DimensionMismatchError,
    DuplicateIdError,
    InvalidParameterError,
    StorageError,
)
from lam_engine.store import PAGE_SIZE, SCHEMA_VERSION, Storage
from lam_engine.store import load as load_module
from lam_engine.store import migrate as migrate_module
from lam_engine.store import space as space_module

CHILD = Path(__file__).with_name("crash_child_storage.py")
T0 = "2025-11-25T14:00:00Z"


def _xi(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)  # (n, d)


@pytest.fixture
def store(tmp_path: Path):
    s = Storage(tmp_path / "data" / "lam.sqlite3")
    yield s
    s.close()


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


# -- durability -------------------------------------------------------------------------


def test_reopen_in_a_new_process_gives_back_everything_bit_for_bit(tmp_path: Path):
    db = tmp_path / "data" / "lam.sqlite3"
    s = Storage(db)
    cfg_a = {"dim": 6, "model": "B", "beta": 8.0, "prefilter": {"kind": "flat", "k": 16}}
    cfg_b = {"dim": 3, "model": "A", "beta": 0.5, "model_params": {"F": "power", "power": 3}}
    s.create_bank("alpha", cfg_a, T0)
    s.create_bank("beta", cfg_b, "2025-11-25T15:00:00Z")
    xi = _xi(300, 6)
    # Awkward values must survive as bits: -0.0, subnormal, extremes.
    xi[0, :3] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max]
    ids = [f"m{i}" for i in range(300)]
    ids[7] = "ünïcødé ✓ 🧠"
    payloads: list[Any] = [{"i": i, "tags": ["x", {"deep": [i, None, True]}]} for i in range(300)]
    payloads[3] = None
    payloads[4] = {"text": "naïve — ok", "big": 2**70 + 1, "f": 0.1}
    for lo in range(0, 300, 100):
        s.upsert("alpha", ids[lo : lo + 100], xi[lo : lo + 100], payloads[lo : lo + 100])
    s.upsert("beta", ["p", "q"], _xi(2, 3, seed=1), [None, {"k": "v"}])
    assert s.delete("alpha", ["m10", "m11"]) == 2
    s.upsert("alpha", ["m5"], xi[1:2] * 2, [{"replaced": True}])
    s.update_bank_config("beta", {**cfg_b, "beta": 2.0})
    expected = {rec.name: (rec, s.load(rec.name)) for rec in s.list_banks()}
    s.close()

    out = tmp_path / "dump.json"
    subprocess.run([sys.executable, str(CHILD), "dump", str(db), str(out)], check=True)
    dumped = json.loads(out.read_text())

    assert [b["name"] for b in dumped] == ["alpha", "beta"]  # creation order
    for bank in dumped:
        rec, loaded = expected[bank["name"]]
        assert bank["config"] == rec.config and bank["created_at"] == rec.created_at
        assert bank["ids"] == loaded.ids and bank["seqs"] == loaded.seqs.tolist()
        assert bank["payloads"] == loaded.payloads
        assert bank["dtype"] == "float32"
        assert bytes.fromhex(bank["vectors_hex"]) == _bits(loaded.vectors)
    # And what the first process saw is what it wrote.
    alpha = expected["alpha"][1]
    keep = [i for i in range(300) if i not in (10, 11)]
    assert alpha.ids == [ids[i] for i in keep]
    want = xi[keep].copy()
    want[keep.index(5)] = xi[1] * 2
    assert _bits(alpha.vectors) == _bits(want)
    assert alpha.payloads[keep.index(5)] == {"replaced": True}
    assert alpha.payloads[4] == {"text": "naïve — ok", "big": 2**70 + 1, "f": 0.1}
    assert expected["beta"][0].config["beta"] == 2.0


# -- seqs and counts ----------------------------------------------------------------------


def test_seqs_increase_replacing_keeps_seq_and_deleted_seqs_are_never_reused(store: Storage):
    store.create_bank("b", {"dim": 2}, T0)
    assert store.upsert("b", ["x", "y", "z"], _xi(3, 2), [None] * 3) == [0, 1, 2]
    assert store.upsert("b", ["z", "w", "x"], _xi(3, 2, 1), [None] * 3) == [2, 3, 0]
    assert store.delete("b", ["w"]) == 1  # the highest seq goes
    assert store.upsert("b", ["v"], _xi(1, 2), [None]) == [4]
    loaded = store.load("b")
    assert loaded.ids == ["x", "y", "z", "v"]
    assert loaded.seqs.dtype == np.int64 and loaded.seqs.tolist() == [0, 1, 2, 4]
    assert _bits(loaded.vectors[0]) == _bits(_xi(3, 2, 1)[2])


def test_delete_counts_only_ids_that_existed(store: Storage):
    store.create_bank("b", {"dim": 2}, T0)
    store.upsert("b", ["a", "b", "c"], _xi(3, 2), [None] * 3)
    assert store.delete("b", ["a", "nope", "a", "c"]) == 2
    assert store.delete("b", ["a", "c"]) == 0
    assert store.delete("b", []) == 0
    assert store.load("b").ids == ["b"]


def test_bank_table_rules(store: Storage):
    store.create_bank("one", {"dim": 2}, T0)
    store.create_bank("two", {"dim": 3}, T0)
    with pytest.raises(BankExistsError):
        store.create_bank("one", {"dim": 2}, T0)
    for call in (
        lambda: store.upsert("ghost", ["a"], _xi(1, 2), [None]),
        lambda: store.delete("ghost", ["a"]),
        lambda: store.load("ghost"),
        lambda: store.update_bank_config("ghost", {"dim": 2}),
        lambda: store.delete_bank("ghost"),
    ):
        with pytest.raises(BankNotFoundError):
            call()
    store.upsert("one", ["a", "b"], _xi(2, 2), [None, None])
    store.delete_bank("one")
    assert [b.name for b in store.list_banks()] == ["two"]
    store.create_bank("one", {"dim": 2}, T0)  # the name is free again, and empty
    loaded = store.load("one")
    assert loaded.ids == [] and loaded.vectors.shape == (0, 2) and loaded.seqs.shape == (0,)
    assert [b.name for b in store.list_banks()] == ["two", "one"]


def test_bad_batches_are_rejected_before_anything_is_written(store: Storage):
    store.create_bank("b", {"dim": 2}, T0)
    with pytest.raises(DimensionMismatchError):
        store.upsert("b", ["a"], _xi(1, 3), [None])
    with pytest.raises(DuplicateIdError):
        store.upsert("b", ["a", "a"], _xi(2, 2), [None, None])
    with pytest.raises(InvalidParameterError):
        store.upsert("b", ["a", "b"], _xi(1, 2), [None, None])
    with pytest.raises(InvalidParameterError):
        store.upsert("b", ["a"], _xi(1, 2), [["not", "an", "object"]])  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError):
        store.upsert("b", ["a", "b"], _xi(2, 2), [None, {"x": object()}])
    with pytest.raises(InvalidParameterError):
        store.upsert("b", ["\ud800"], _xi(1, 2), [None])
    assert store.load("b").ids == []


# -- atomicity ------------------------------------------------------------------------------


class _FailingConnection:
    """Delegates to a real connection; its n-th executemany writes half the rows, then fails."""

    def __init__(self, conn: sqlite3.Connection, fail_on: int) -> None:
        self._conn, self._left = conn, fail_on

    def executemany(self, sql: str, rows: list) -> sqlite3.Cursor:
        self._left -= 1
        if self._left == 0:
            self._conn.executemany(sql, rows[: max(1, len(rows) // 2)])
            exc = sqlite3.OperationalError("disk I/O error")
            exc.sqlite_errorname = "SQLITE_IOERR_WRITE"  # what SQLite sets on a failed write
            raise exc
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("fail_on", [1, 2], ids=["during-updates", "during-inserts"])
def test_a_batch_failing_midway_leaves_nothing_behind(store: Storage, fail_on: int):
    store.create_bank("b", {"dim": 4}, T0)
    store.upsert("b", [f"m{i}" for i in range(50)], _xi(50, 4), [{"v": 1}] * 50)
    before = store.load("b")
    real = store._conn
    store._conn = _FailingConnection(real, fail_on)  # type: ignore[assignment]
    # 20 replacements (one executemany) then 80 new ids (a second executemany).
    ids = [f"m{i}" for i in range(30, 50)] + [f"n{i}" for i in range(80)]
    with pytest.raises(StorageError) as err:
        store.upsert("b", ids, _xi(100, 4, seed=9), [{"v": 2}] * 100)
    store._conn = real
    assert err.value.code == "storage_unavailable" and "I/O error" in err.value.message
    after = store.load("b")
    assert after.ids == before.ids and after.seqs.tolist() == before.seqs.tolist()
    assert _bits(after.vectors) == _bits(before.vectors) and after.payloads == before.payloads
    # The seq counter rolled back too: the next new id takes the next unused seq.
    assert store.upsert("b", ["fresh"], _xi(1, 4), [None]) == [50]


def test_replace_bank_is_one_transaction(store: Storage):
    store.create_bank("b", {"dim": 4}, T0)
    store.upsert("b", ["old1", "old2"], _xi(2, 4), [None, None])
    real = store._conn
    store._conn = _FailingConnection(real, 1)  # type: ignore[assignment]
    with pytest.raises(StorageError):
        store.replace_bank(
            "b", {"dim": 4, "beta": 3.0}, "t1", ["n1", "n2"], _xi(2, 4, 1), [None] * 2
        )
    store._conn = real
    assert store.load("b").ids == ["old1", "old2"]
    assert store.list_banks()[0].config == {"dim": 4}
    seqs = store.replace_bank(
        "b", {"dim": 4, "beta": 3.0}, "t1", ["n1", "n2"], _xi(2, 4, 1), [None] * 2
    )
    assert seqs == [0, 1]
    assert store.load("b").ids == ["n1", "n2"] and store.list_banks()[0].created_at == "t1"
    assert store.replace_bank("new", {"dim": 4}, "t2", [], np.zeros((0, 4), np.float32), []) == []
    assert [b.name for b in store.list_banks()] == ["b", "new"]


# -- failures of the medium ------------------------------------------------------------------


def test_disk_full_is_a_storage_error_and_the_store_stays_readable(store: Storage):
    store.create_bank("b", {"dim": 64}, T0)
    store.upsert("b", [f"m{i}" for i in range(10)], _xi(10, 64), [None] * 10)
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    # Capping the file at its current size is SQLite's own "disk full" (SQLITE_FULL).
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageError) as err:
        store.upsert("b", [f"n{i}" for i in range(2000)], _xi(2000, 64), [None] * 2000)
    assert err.value.message == "storage upsert failed: disk full"
    assert err.value.details["sqlite_error"] == "SQLITE_FULL"
    assert "INSERT" not in str(err.value) and "memories" not in str(err.value)
    assert store.load("b").ids == [f"m{i}" for i in range(10)]
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    store.upsert("b", ["n0"], _xi(1, 64), [None])
    assert len(store.load("b").ids) == 11


def _readonly_child(db: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(CHILD), "readonly", str(db)]
    if os.geteuid() == 0:
        # Root ignores file modes: drop the capabilities that bypass them.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file read-only")
        caps = "-dac_override,-dac_read_search,-fowner,-linux_immutable"
        cmd = [setpriv, "--inh-caps=-all", f"--bounding-set={caps}", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("directory_too", [False, True], ids=["file", "file-and-directory"])
def test_read_only_store_refuses_writes_but_serves_reads(tmp_path: Path, directory_too: bool):
    db = tmp_path / "ro" / "lam.sqlite3"
    s = Storage(db)
    s.create_bank("b", {"dim": 4}, T0)
    s.upsert("b", [f"m{i}" for i in range(5)], _xi(5, 4), [None] * 5)
    s.close()
    db.chmod(0o444)
    if directory_too:
        db.parent.chmod(0o555)
    try:
        report = _readonly_child(db)
    finally:
        db.parent.chmod(0o755)
        db.chmod(0o644)
    assert report["read_only"] is True
    assert report["banks"] == ["b"] and report["count"] == 5 and report["count_after"] == 5
    for op in ("upsert", "create_bank", "delete"):
        assert report[op] == {
            "code": "storage_unavailable",
            "message": f"storage {op} failed: database is read-only",
        }
    assert len(Storage(db).load("b").ids) == 5


def test_unopenable_paths_are_storage_errors(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError):
        Storage(tmp_path / "file" / "lam.sqlite3")  # parent is a regular file
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="file is not a database"):
        Storage(garbage)


def test_closed_store_raises_storage_error(tmp_path: Path):
    s = Storage(tmp_path / "lam.sqlite3")
    s.create_bank("b", {"dim": 2}, T0)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        s.list_banks()
    with pytest.raises(StorageError, match="closed"):
        s.upsert("b", ["a"], _xi(1, 2), [None])


@pytest.mark.parametrize("mode", ["OFF", "EXTRA", "fast", "", 1])
def test_synchronous_must_be_full_or_normal(tmp_path: Path, mode: Any):
    with pytest.raises(InvalidParameterError):
        Storage(tmp_path / "lam.sqlite3", synchronous=mode)


@pytest.mark.parametrize(("mode", "pragma"), [("FULL", 2), ("normal", 1)])
def test_synchronous_mode_is_applied(tmp_path: Path, mode: str, pragma: int):
    s = Storage(tmp_path / "lam.sqlite3", synchronous=mode)
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == pragma
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


# -- model check and threads ------------------------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete"]),
        st.lists(st.sampled_from([f"k{i}" for i in range(12)]), max_size=8, unique=True),
        st.integers(0, 2**31),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(_ops)
def test_store_behaves_like_an_ordered_dict(ops: list[tuple[str, list[str], int]]):
    s = Storage(":memory:")
    s.create_bank("b", {"dim": 3}, T0)
    model: dict[str, tuple[int, bytes, dict]] = {}  # id -> (seq, vector bits, payload)
    next_seq = 0
    for op, ids, seed in ops:
        if op == "upsert":
            xi = _xi(len(ids), 3, seed)
            payloads = [{"seed": seed, "id": i} for i in ids]
            seqs = s.upsert("b", ids, xi, payloads)
            for k, id_ in enumerate(ids):
                if id_ not in model:
                    model[id_] = (next_seq, b"", {})
                    next_seq += 1
                model[id_] = (model[id_][0], _bits(xi[k]), payloads[k])
                assert seqs[k] == model[id_][0]
        else:
            assert s.delete("b", ids) == sum(i in model for i in ids)
            for id_ in ids:
                model.pop(id_, None)
    loaded = s.load("b")
    want = sorted(model.items(), key=lambda kv: kv[1][0])
    assert loaded.ids == [k for k, _ in want]
    assert loaded.seqs.tolist() == [v[0] for _, v in want]
    assert loaded.vectors.tobytes() == b"".join(v[1] for _, v in want)
    assert loaded.payloads == [v[2] for _, v in want]
    s.close()


def test_concurrent_writers_are_serialized(store: Storage):
    store.create_bank("b", {"dim": 4}, T0)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for j in range(20):
                ids = [f"t{t}-{j}-{i}" for i in range(5)]
                store.upsert("b", ids, _xi(5, 4, t * 100 + j), [None] * 5)
                store.load("b")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    loaded = store.load("b")
    assert len(loaded.ids) == 400 and sorted(loaded.seqs.tolist()) == list(range(400))


# -- write generations and schema migration -----------------------------------------------

# The schema this code's predecessor created (version 1: no write generations).
_V1_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE banks ("
    " name TEXT PRIMARY KEY, config TEXT NOT NULL, created_at TEXT NOT NULL,"
    " ord INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE memories ("
    " bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT,"
    " PRIMARY KEY (bank, seq)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX memories_bank_id ON memories (bank, id)",
    "INSERT INTO meta VALUES ('schema_version', '1')",
)


def _make_v1_store(db: Path, xi: np.ndarray) -> None:
    """A store exactly as version-1 code left it: bank "old" holding xi as m0, m1, ..."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for stmt in _V1_SCHEMA:
        conn.execute(stmt)
    conn.execute(
        "INSERT INTO banks VALUES ('old', ?, ?, 0, ?)",
        (json.dumps({"dim": int(xi.shape[1])}), T0, len(xi)),
    )
    conn.executemany(
        "INSERT INTO memories VALUES ('old', ?, ?, ?, ?)",
        [(i, f"m{i}", _bits(x), json.dumps({"i": i})) for i, x in enumerate(xi)],
    )
    conn.close()


def test_every_committed_write_stamps_a_generation_never_reused(store: Storage):
    seen: list[int] = []

    def fresh(bank: str) -> int:
        g = store.generation(bank)
        assert g is not None and all(g > s for s in seen)  # strictly after every earlier one
        assert store.load(bank).generation == g
        seen.append(g)
        return g

    store.create_bank("b", {"dim": 2}, T0)
    fresh("b")
    store.create_bank("other", {"dim": 2}, T0)
    other = fresh("other")
    store.upsert("b", ["x", "y"], _xi(2, 2), [None, None])
    g = fresh("b")
    store.upsert("b", [], np.zeros((0, 2), np.float32), [])  # nothing written
    assert store.delete("b", ["nope"]) == 0
    with pytest.raises(DimensionMismatchError):  # rejected: rolled back
        store.upsert("b", ["z"], _xi(1, 3), [None])
    assert store.generation("b") == g
    store.upsert("b", ["x"], _xi(1, 2, 5), [None])  # a replace is a write too
    fresh("b")
    assert store.delete("b", ["y"]) == 1
    fresh("b")
    store.update_bank_config("b", {"dim": 2, "beta": 3.0})
    fresh("b")
    store.replace_bank("b", {"dim": 2}, T0, ["q"], _xi(1, 2), [None])
    fresh("b")
    store.delete_bank("b")
    store.create_bank("b", {"dim": 2}, T0)  # same name, new bank: a generation never seen
    fresh("b")
    assert store.generation("other") == other  # writes to one bank leave the others alone
    with pytest.raises(BankNotFoundError):
        store.generation("ghost")


def test_generations_survive_reopen(tmp_path: Path):
    db = tmp_path / "lam.sqlite3"
    s = Storage(db)
    s.create_bank("b", {"dim": 2}, T0)
    s.upsert("b", ["x"], _xi(1, 2), [None])
    g = s.generation("b")
    s.close()
    s = Storage(db)
    assert s.generation("b") == g
    s.create_bank("c", {"dim": 2}, T0)
    assert s.generation("c") > g  # the counter is stored, not recomputed
    s.close()


def test_version_1_store_is_migrated_in_place(tmp_path: Path):
    db = tmp_path / "lam.sqlite3"
    xi = _xi(5, 3)
    _make_v1_store(db, xi)
    s = Storage(db)
    assert s.schema_version == SCHEMA_VERSION == 6
    assert s.migration is not None and s.migration["from_version"] == 1
    loaded = s.load("old")
    assert loaded.ids == [f"m{i}" for i in range(5)] and _bits(loaded.vectors) == _bits(xi)
    assert loaded.payloads == [{"i": i} for i in range(5)]
    assert loaded.generation == 0 == s.generation("old")
    assert s.upsert("old", ["new"], _xi(1, 3, 1), [None]) == [5]  # next_seq was kept
    assert s.generation("old") == 1
    s.create_bank("fresh", {"dim": 3}, T0)
    assert s.generation("fresh") == 2
    s.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("6",)
    conn.close()
    s = Storage(db)  # a migrated store opens as a current one
    assert s.schema_version == SCHEMA_VERSION and s.migration is None
    assert s.generation("old") == 1 and len(s.load("old").ids) == 6
    s.close()


def _assert_served_read_only(db: Path, *, banks: list[str], count: int) -> None:
    """Opened from a read-only file (in a child process): served, writes refused."""
    db.chmod(0o444)
    try:
        report = _readonly_child(db)
    finally:
        db.chmod(0o644)
    assert report["read_only"] is True and report["banks"] == banks
    assert report["count"] == count
    assert report["upsert"]["message"] == "storage upsert failed: database is read-only"


def test_version_1_store_read_only_is_served_unmigrated(tmp_path: Path):
    db = tmp_path / "ro" / "lam.sqlite3"
    _make_v1_store(db, _xi(4, 4))
    _assert_served_read_only(db, banks=["old"], count=4)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    conn.close()


def test_unknown_schema_version_is_refused(tmp_path: Path):
    db = tmp_path / "lam.sqlite3"
    Storage(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="unsupported schema version"):
        Storage(db)


# -- schema version 3: layout, migration of version-2 stores, streamed loads ---------------

_V2_MEMORIES = (
    "CREATE TABLE memories ("
    " bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT,"
    " PRIMARY KEY (bank, seq)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX memories_bank_id ON memories (bank, id)",
)


def _downgrade_to_v2(db: Path) -> None:
    """Rewrite a current store in the version-2 layout (WITHOUT ROWID, 4 KiB pages)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE memories RENAME TO memories_new")
    conn.execute("DROP INDEX IF EXISTS memories_key")
    conn.execute("DROP INDEX memories_bank_seq")
    for stmt in _V2_MEMORIES:
        conn.execute(stmt)
    conn.execute("INSERT INTO memories SELECT bank, seq, id, vector, payload FROM memories_new")
    conn.execute("DROP TABLE memories_new")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.execute("COMMIT")
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("VACUUM")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def _layout(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
        return {
            "version": conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()[0],
            "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "without_rowid": "WITHOUT ROWID" in sql["memories"].upper(),
            "indexes": sorted(n for n in sql if n.startswith("memories_")),
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
        }
    finally:
        conn.close()


def _fill_v2_style(db: Path) -> dict[str, Any]:
    """A store with two interleaved banks, gaps, replaced ids and payloads, as version 2 left it."""
    s = Storage(db)
    s.create_bank("a", {"dim": 6}, T0)
    s.create_bank("b", {"dim": 3}, T0)
    for k in range(6):
        s.upsert(
            "a",
            [f"a{k}-{i}" for i in range(40)],
            _xi(40, 6, k),
            [{"k": k, "i": i} for i in range(40)],
        )
        s.upsert("b", [f"b{k}-{i}" for i in range(7)], _xi(7, 3, 50 + k), [None] * 7)
    s.delete("a", [f"a2-{i}" for i in range(40)] + ["a0-0"])
    s.delete("b", ["b5-6"])  # the highest seq: next_seq stays ahead of max(seq)
    s.upsert("a", ["a1-3"], _xi(1, 6, 99), [{"replaced": True}])
    state = {b.name: (s.load(b.name), s.generation(b.name)) for b in s.list_banks()}
    s.close()
    _downgrade_to_v2(db)
    assert _layout(db)["without_rowid"] and _layout(db)["page_size"] == 4096
    return state


def _assert_same(s: Storage, state: dict[str, Any]) -> None:
    assert [b.name for b in s.list_banks()] == list(state)
    for name, (want, generation) in state.items():
        got = s.load(name)
        assert got.ids == want.ids and got.seqs.tolist() == want.seqs.tolist()
        assert _bits(got.vectors) == _bits(want.vectors) and got.payloads == want.payloads
        assert got.generation == generation == s.generation(name)


def test_new_store_uses_the_version_6_layout(tmp_path: Path):
    db = tmp_path / "lam.sqlite3"
    Storage(db).close()
    assert _layout(db) == {
        "version": "6", "page_size": PAGE_SIZE, "journal_mode": "wal", "without_rowid": False,
        "indexes": ["memories_bank_seq", "memories_expires"], "integrity": "ok",
    }  # fmt: skip


def test_version_2_store_is_migrated_and_compacted_keeping_everything(tmp_path: Path):
    db = tmp_path / "lam.sqlite3"
    state = _fill_v2_style(db)
    s = Storage(db)
    assert s.schema_version == SCHEMA_VERSION and s.migration is not None
    assert s.migration["from_version"] == 2 and s.migration["vacuum"].startswith("done")
    _assert_same(s, state)
    # Seq rules hold on the new table: a replace keeps its seq, new ids continue next_seq.
    a_next = int(state["a"][0].seqs[-1]) + 1
    assert s.upsert("a", ["a1-4", "fresh"], _xi(2, 6, 7), [None, None]) == [44, a_next]
    assert s.upsert("b", ["new"], _xi(1, 3), [None]) == [42]  # 41 was deleted: not reused
    assert s.delete("a", ["a1-4", "nope"]) == 1
    s.close()
    assert _layout(db) == {
        "version": "6", "page_size": PAGE_SIZE, "journal_mode": "wal", "without_rowid": False,
        "indexes": ["memories_bank_seq", "memories_expires"], "integrity": "ok",
    }  # fmt: skip
    assert not (tmp_path / "lam.sqlite3-journal").exists()


def test_migration_without_room_for_the_vacuum_keeps_the_page_size(tmp_path: Path, monkeypatch):
    db = tmp_path / "lam.sqlite3"
    state = _fill_v2_style(db)
    # 100 MiB free of 1 GiB: enough for the migration, not for a VACUUM's reserve.
    monkeypatch.setattr(space_module, "free_bytes", lambda path: (100 << 20, 1 << 30, 1))
    s = Storage(db)
    assert (
        s.schema_version == SCHEMA_VERSION
        and s.migration["vacuum"] == "skipped: not enough disk space"
    )
    _assert_same(s, state)
    s.close()
    layout = _layout(db)
    assert layout["page_size"] == 4096 and not layout["without_rowid"]
    assert layout["journal_mode"] == "wal" and layout["integrity"] == "ok"


def test_migration_refuses_to_start_without_disk_space(tmp_path: Path, monkeypatch):
    db = tmp_path / "lam.sqlite3"
    state = _fill_v2_style(db)
    monkeypatch.setattr(space_module, "free_bytes", lambda path: (1 << 20, 1 << 30, 1))
    with pytest.raises(StorageError) as err:
        Storage(db)
    assert err.value.message == "storage migrate failed: not enough disk space to migrate the store"
    assert err.value.details["needed_bytes"] > err.value.details["free_bytes"]
    assert _layout(db)["version"] == "2"  # untouched
    monkeypatch.undo()
    s = Storage(db)
    _assert_same(s, state)
    s.close()


def test_failed_migration_leaves_the_version_2_store_intact(tmp_path: Path, monkeypatch):
    db = tmp_path / "lam.sqlite3"
    state = _fill_v2_style(db)
    real = migrate_module._migrate_to_4

    def failing(conn: sqlite3.Connection) -> None:
        real(conn)  # every step done, then the disk fails before COMMIT
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = "SQLITE_IOERR_WRITE"
        raise exc

    monkeypatch.setattr(migrate_module, "_migrate_to_4", failing)
    with pytest.raises(StorageError, match="storage migrate failed: I/O error"):
        Storage(db)
    layout = _layout(db)
    assert layout["version"] == "2" and layout["without_rowid"] and layout["integrity"] == "ok"
    monkeypatch.undo()
    s = Storage(db)
    assert s.schema_version == SCHEMA_VERSION
    _assert_same(s, state)
    s.close()


def test_migration_while_another_connection_is_open_stays_in_wal(tmp_path: Path):
    db = tmp_path / "lam.sqlite3"
    state = _fill_v2_style(db)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("SELECT COUNT(*) FROM banks").fetchone()  # holds the WAL read lock
    try:
        s = Storage(db)
        assert s.schema_version == SCHEMA_VERSION and s.migration["vacuum"] == "not tried"
        _assert_same(s, state)
        assert other.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "6",
        )
        s.close()
    finally:
        other.close()
    layout = _layout(db)
    assert layout["page_size"] == 4096 and not layout["without_rowid"]
    assert layout["journal_mode"] == "wal" and layout["integrity"] == "ok"


def test_version_2_store_read_only_is_served_unmigrated(tmp_path: Path):
    db = tmp_path / "ro" / "lam.sqlite3"
    s = Storage(db)
    s.create_bank("b", {"dim": 4}, T0)
    s.upsert("b", [f"m{i}" for i in range(6)], _xi(6, 4), [None] * 6)
    s.close()
    _downgrade_to_v2(db)
    _assert_served_read_only(db, banks=["b"], count=6)
    assert _layout(db)["version"] == "2"


class _RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def reserve(self, n: int, d: int) -> None:
        self.calls.append(("reserve", n, d))
        self.array = np.full((n, d), np.nan, dtype=np.float32)

    def write(self, start: int, block: np.ndarray) -> None:
        assert block.dtype == np.float32 and block.flags.writeable
        self.calls.append(("write", start, len(block)))
        self.array[start : start + len(block)] = block


def test_load_streams_in_chunks_into_a_sink(store: Storage, monkeypatch):
    monkeypatch.setattr(load_module, "LOAD_CHUNK_BYTES", 8 * 4 * 100)  # 100 rows of d = 8
    monkeypatch.setattr(load_module, "_LOAD_CHUNK_ROWS", (1, 1000))
    store.create_bank("b", {"dim": 8}, T0)
    xi = _xi(450, 8)
    payloads: list[Any] = [None if i % 3 else {"i": i, "big": 2**70} for i in range(450)]
    store.upsert("b", [f"m{i}" for i in range(450)], xi, payloads)
    store.delete("b", [f"m{i}" for i in range(100, 150)])
    keep = [i for i in range(450) if not 100 <= i < 150]
    sink = _RecordingSink()
    loaded = store.load("b", sink=sink)
    assert loaded.vectors is None
    assert sink.calls == [("reserve", 400, 8)] + [("write", k, 100) for k in range(0, 400, 100)]
    assert _bits(sink.array) == _bits(xi[keep])
    assert loaded.ids == [f"m{i}" for i in keep] and loaded.seqs.tolist() == keep
    assert loaded.payloads == [payloads[i] for i in keep]
    plain = store.load("b")  # the default sink: one float32 array
    assert _bits(plain.vectors) == _bits(xi[keep]) and plain.payloads == loaded.payloads
    store.create_bank("empty", {"dim": 5}, T0)
    sink = _RecordingSink()
    assert store.load("empty", sink=sink).ids == [] and sink.calls == [("reserve", 0, 5)]


def test_load_refuses_vectors_of_the_wrong_size(store: Storage):
    store.create_bank("b", {"dim": 4}, T0)
    store.upsert("b", ["a", "b"], _xi(2, 4), [None, None])
    store._conn.execute("UPDATE memories SET vector = x'00000000' WHERE id = 'b'")
    with pytest.raises(StorageError, match="inconsistent vector sizes"):
        store.load("b")
    store._conn.execute(
        "UPDATE memories SET vector = ?, payload = '{' WHERE id = 'b'", (b"\0" * 16,)
    )
    with pytest.raises(StorageError, match="corrupt payload"):
        store.load("b")


def test_an_empty_map_skips_the_lookup_and_a_stored_id_stays_where_it_is(store: Storage):
    """stored={} (the engine's "all new") inserts without reading the bank's ids."""
    store.create_bank("b", {"dim": 2}, T0)
    assert store.upsert("b", ["x", "y"], _xi(2, 2), [None, None], stored={}) == [0, 1]
    assert store.upsert("b", ["z"], _xi(1, 2), [{"k": 1}], stored={}) == [2]
    loaded = store.load("b")
    assert loaded.ids == ["x", "y", "z"] and _bits(loaded.vectors) == _bits(
        np.concatenate([_xi(2, 2), _xi(1, 2)])
    )
    # Without a map the store finds "y" itself: replaced in place, "w" appended.
    assert store.upsert("b", ["w", "y"], _xi(2, 2, 5), [None, None]) == [3, 1]
