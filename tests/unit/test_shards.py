"""Sharded banks in one process: routing, durability, every endpoint as on one shard.

The math of query and energy is the property test's (test_shards_equivalence.py); here the
rest of API.md "Sharded banks": placement by id, the description and the store (a restart),
replicas refused outside cluster mode, get/scroll/count/delete, diagnostics, dynamics,
Models A and C, PATCH, and snapshots exported once and imported into any shard count.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from lam_engine import BankConfig, Engine, PrefilterConfig
from lam_engine.errors import ClusterRequiredError, InvalidParameterError
from lam_engine.shards import ShardedBank, shard_of
from tests import reference as ref

N, D = 90, 6
RNG = np.random.default_rng(7)
XI = (RNG.normal(size=(N, D)) / np.sqrt(D)).astype(np.float32)
IDS = [f"m{i}" for i in range(N)]
PAYLOADS = [{"t": i % 4, "name": f"n{i}"} for i in range(N)]
Q = (XI[:4] + 0.2 * RNG.normal(size=(4, D))).astype(np.float32)


def _fill(engine: Engine, name: str, shards: int, **cfg: object) -> None:
    engine.create_bank(name, BankConfig(dim=D, beta=3.0, shards=shards, **cfg))  # type: ignore[arg-type]
    engine.upsert(name, XI[:60], ids=IDS[:60], payloads=PAYLOADS[:60])
    engine.upsert(name, XI[60:], payloads=PAYLOADS[60:])  # content ids route by hash too
    engine.upsert(name, XI[:5] * 0.5, ids=IDS[:5], payloads=PAYLOADS[:5])  # replaces
    engine.delete_memories(name, ["m7", "m8", "absent"])


def _records(engine: Engine, name: str) -> list[tuple[str, object, list[float]]]:
    recs, _ = engine.scroll(name, 1000)
    return [(r.id, r.payload, r.vector.tolist()) for r in recs]  # type: ignore[union-attr]


@pytest.fixture
def engine() -> Engine:
    e = Engine.open(None)
    _fill(e, "one", 1)
    _fill(e, "many", 5)
    return e


def test_placement_is_a_stable_hash_of_the_id() -> None:
    # Fixed values: a change of the hash would misplace every stored memory after a restart.
    assert [shard_of(f"m{i}", 7) for i in range(8)] == [shard_of(f"m{i}", 7) for i in range(8)]
    assert shard_of("m0", 1) == 0
    counts = np.bincount([shard_of(f"id-{i}", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 850  # spread evenly (expected 1000 each)


def test_each_shard_holds_exactly_the_ids_that_hash_to_it(engine: Engine) -> None:
    bank = engine._slot("many").bank
    assert isinstance(bank, ShardedBank) and len(bank.parts) == 5
    total = 0
    for s, part in enumerate(bank.parts):
        ids = [part.id_at(int(r)) for r in part.alive_rows()]
        assert all(shard_of(i, 5) == s for i in ids)
        total += len(ids)
    assert total == bank.count == engine.bank_info("one").count == N - 2
    assert sum(1 for p in bank.parts if p.count) >= 4


def test_description_says_shards_and_replicas(engine: Engine) -> None:
    d = engine.bank_info("many").to_dict()
    assert (d["shards"], d["replicas"], d["count"]) == (5, 1, N - 2)
    assert engine.bank_info("one").to_dict()["shards"] == 1


def test_replicas_need_a_cluster_and_shards_are_bounded() -> None:
    e = Engine.open(None)
    with pytest.raises(ClusterRequiredError) as err:
        e.create_bank("r", BankConfig(dim=3, replicas=2))
    assert err.value.status == 422 and err.value.code == "cluster_required"
    for bad in ({"shards": 0}, {"shards": 65}, {"replicas": 0}, {"replicas": 6}):
        with pytest.raises(InvalidParameterError):
            e.create_bank("r", BankConfig(dim=3, **bad))  # type: ignore[arg-type]
    assert e.list_banks() == []


def test_reads_equal_the_one_shard_bank(engine: Engine) -> None:
    for name in ("one", "many"):
        assert engine.count(name) == N - 2
    flt = {"must": [{"key": "t", "match": {"value": 1}}]}
    assert engine.count("many", flt) == engine.count("one", flt)
    got = engine.get_memory("many", "m3")
    want = engine.get_memory("one", "m3")
    np.testing.assert_array_equal(got.vector, want.vector)
    assert got.payload == want.payload

    def pages(name: str, **kw: object) -> list[tuple[str, object]]:
        out, cursor = [], None
        while True:
            recs, cursor = engine.scroll(name, 7, cursor, **kw)  # type: ignore[arg-type]
            out += [(r.id, r.payload) for r in recs]
            if cursor is None:
                return out

    assert pages("many") == pages("one")  # insertion order across shards
    assert pages("many", filter=flt) == pages("one", filter=flt)


def test_deletes_by_filter_and_ids_equal(engine: Engine) -> None:
    flt = {"must": [{"key": "t", "match": {"value": 2}}]}
    assert engine.delete_memories("many", filter=flt) == engine.delete_memories("one", filter=flt)
    assert engine.delete_memories("many", ["m1", "m3"]) == 2
    engine.delete_memories("one", ["m1", "m3"])
    assert engine.count("many") == engine.count("one")
    a, b = engine.query("one", Q, steps=3), engine.query("many", Q, steps=3)
    for ra, rb in zip(a.results, b.results, strict=True):
        np.testing.assert_allclose(rb.state, ra.state, atol=1e-5)
        assert [m.id for m in rb.matches] == [m.id for m in ra.matches]


def test_diagnostics_and_dynamics_equal(engine: Engine) -> None:
    a, b = engine.diagnostics("one", beta=2.0), engine.diagnostics("many", beta=2.0)
    assert a.to_dict() == b.to_dict()
    ya, yb = (engine.dynamics(n, Q[0], t_max=0.3, top_k=3) for n in ("one", "many"))
    np.testing.assert_allclose(yb.energy, ya.energy, rtol=1e-9)
    np.testing.assert_allclose(yb.state, ya.state, atol=1e-6)
    assert yb.hidden_top == ya.hidden_top
    hidden = np.linspace(-1, 1, N - 2)  # follows the memory order (GET /memories)
    ha, hb = (engine.dynamics(n, Q[1], hidden=hidden, t_max=0.2) for n in ("one", "many"))
    np.testing.assert_allclose(hb.energy, ha.energy, rtol=1e-9)


def test_diagnostics_through_the_shards_indexes_finds_cross_shard_neighbours() -> None:
    e = Engine.open(None)
    pf = PrefilterConfig(kind="flat", k=8, min_size=0)
    for name, k in (("one", 1), ("many", 4)):
        e.create_bank(name, BankConfig(dim=D, beta=3.0, shards=k, prefilter=pf))
        e.upsert(name, XI, ids=IDS)
    from lam_engine import ops

    one, many = e._slot("one"), e._slot("many")
    assert isinstance(many.bank, ShardedBank)
    index = many.bank.search_index()
    assert index is not None and one.prefilter is not None
    got = ops._separations_via_index(many.bank, index).numpy()
    want = ops._separations_via_index(one.bank, one.prefilter).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    x = XI.astype(np.float64)
    gram = x @ x.T
    np.fill_diagonal(gram, -np.inf)
    np.testing.assert_allclose(got, (x**2).sum(1) - gram.max(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["A", "C"])
def test_models_a_and_c_answer_as_one_shard(model: str) -> None:
    e = Engine.open(None)
    for name, k in (("one", 1), ("many", 3)):
        e.create_bank(name, BankConfig(dim=D, model=model, shards=k))  # type: ignore[arg-type]
        e.upsert(name, np.sign(XI) if model == "A" else XI, ids=IDS, payloads=PAYLOADS)
    flt = {"must": [{"key": "t", "match": {"any": [0, 3]}}]}
    for kw in ({}, {"filter": flt}):
        a, b = e.query("one", Q, steps=2, **kw), e.query("many", Q, steps=2, **kw)
        assert a.to_dict() == b.to_dict()
        ea, eb = e.energy("one", Q, **kw), e.energy("many", Q, **kw)
        np.testing.assert_allclose(eb.energies, ea.energies, rtol=1e-12)


def test_patch_prefilter_and_payload_index_reach_every_shard(engine: Engine) -> None:
    pf = PrefilterConfig(kind="flat", k=6, min_size=0, tolerance=1.0)
    for name in ("one", "many"):
        engine.update_bank(name, prefilter=pf, payload_index={"t": "integer"})
    info = engine.bank_info("many")
    assert [s["kind"] for s in info.index["shards"]] == ["flat"] * 5
    assert sum(s["ntotal"] for s in info.index["shards"]) == N - 2
    bank = engine._slot("many").bank
    assert isinstance(bank, ShardedBank)
    assert all(p.config.payload_index == {"t": "integer"} for p in bank.parts)
    flt = {"must": [{"key": "t", "match": {"value": 3}}]}
    assert engine.count("many", flt) == engine.count("one", flt) > 0
    res = engine.query("many", Q, steps=1, top_k=3)
    assert res.prefiltered
    x = np.concatenate([XI[:5] * 0.5, XI[5:]]).astype(np.float64)
    x = np.delete(x, [7, 8], axis=0)
    for r in res.results:
        e_exact = ref.energy(x, r.state, 3.0)[0]
        assert r.missed_mass_bound is not None
        assert e_exact - 1e-5 <= r.energy <= e_exact - np.log1p(-r.missed_mass_bound) / 3 + 1e-5
    engine.upsert("many", XI[:3] * 2, ids=["new1", "new2", "new3"])  # indexes follow writes
    assert sum(s["ntotal"] for s in engine.bank_info("many").index["shards"]) == N + 1


def test_snapshot_exports_one_file_and_imports_into_any_shard_count(engine: Engine) -> None:
    f = io.BytesIO()
    engine.export_snapshot("many", f)
    g = io.BytesIO()
    engine.export_snapshot("one", g)
    for k in (1, 2, 8, None):
        f.seek(0)
        info = engine.import_snapshot(f"copy{k}".lower(), f, shards=k)
        assert info.config.shards == (5 if k is None else k) and info.count == N - 2
        a, b = engine.query("one", Q, steps=5), engine.query(f"copy{k}".lower(), Q, steps=5)
        for ra, rb in zip(a.results, b.results, strict=True):
            np.testing.assert_allclose(rb.state, ra.state, atol=1e-5)
            assert [m.id for m in rb.matches] == [m.id for m in ra.matches]
        assert _records(engine, f"copy{k}".lower()) == _records(engine, "one")
    # The file of a sharded bank holds the same memories in the same order as one shard's.
    from lam_engine.store import snapshot as snapshot_io

    f.seek(0)
    g.seek(0)
    sa, sb = snapshot_io.read_snapshot(f), snapshot_io.read_snapshot(g)
    assert list(sa.ids) == list(sb.ids) and list(sa.payloads) == list(sb.payloads)
    np.testing.assert_array_equal(sa.vectors, sb.vectors)
    assert (sa.config["shards"], sb.config["shards"]) == (5, 1)


def test_a_sharded_bank_survives_a_restart(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as e:
        _fill(e, "many", 3, prefilter=PrefilterConfig(kind="flat", k=5, min_size=0))
        before = e.query("many", Q, steps=5)
        pages = _records(e, "many")
    with Engine.open(tmp_path) as e:
        info = e.bank_info("many")
        assert (info.config.shards, info.count) == (3, N - 2)
        assert info.index["shards"][0]["kind"] == "flat"
        after = e.query("many", Q, steps=5)
        for ra, rb in zip(before.results, after.results, strict=True):
            # Reloaded without tombstones: the same sums in another order, float32-close.
            np.testing.assert_allclose(rb.state, ra.state, atol=1e-6)
            assert [m.id for m in rb.matches] == [m.id for m in ra.matches]
        assert _records(e, "many") == pages
        bank = e._slot("many").bank
        assert isinstance(bank, ShardedBank)
        assert all(shard_of(p.id_at(int(r)), 3) == s for s, p in enumerate(bank.parts)
                   for r in p.alive_rows())  # fmt: skip
