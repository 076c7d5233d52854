"""Where features built apart meet: novelty with strengths and lifetimes, text banks with
novelty and strengths, sharded banks with text and forgetting, the reaper beside
a sharded bank. Each feature has its own suite; these check that one does not drop or
break another's data on the shared write path (Engine.upsert)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from lam_engine.clock import ManualClock
from tests import reference as ref

T0 = 1.8e9
BETA = 8.0


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def engine_clock() -> Any:
    clock = ManualClock(T0)
    engine = Engine.open(None, clock=clock)
    yield engine, clock
    engine.close()


def test_a_gated_batch_keeps_the_strengths_and_lifetimes_of_what_it_stores(
    engine_clock: Any,
) -> None:
    engine, clock = engine_clock
    engine.create_bank("b", BankConfig(dim=16, beta=BETA, normalize=True))
    base = _unit(4, 16, 0)
    engine.upsert("b", base, ids=[f"m{i}" for i in range(4)])
    fresh = _unit(3, 16, 1)
    x = np.concatenate([base[:1] + 1e-3, fresh])  # row 0 duplicates m0: skipped
    res = engine.upsert(
        "b",
        x,
        ids=["dup", "n0", "n1", "n2"],
        if_novel=-0.1,
        strengths=[9.0, 2.0, 3.0, 4.0],
        ttl_s=[None, 10.0, None, 5.0],
    )
    assert res.ids == ["n0", "n1", "n2"] and [s.id for s in res.skipped or []] == ["dup"]
    got = {i: engine.get_memory("b", i).to_dict() for i in res.ids}
    assert [got[i]["strength"] for i in res.ids] == [2.0, 3.0, 4.0]
    assert got["n1"]["expires_at"] is None and got["n0"]["expires_at"] is not None
    # The query weights see those strengths: the oracle with log s as the bias.
    xi = np.concatenate([base, fresh]).astype(np.float64)
    bias = np.log([1, 1, 1, 1, 2.0, 3.0, 4.0])
    q = _unit(2, 16, 7)
    w = ref.weights(xi, ref.normalize(q), BETA, bias)
    out = engine.query("b", q, steps=0, top_k=7)
    ids = ["m0", "m1", "m2", "m3", "n0", "n1", "n2"]
    for i, r in enumerate(out.results):
        for m in r.matches:
            assert m.weight == pytest.approx(w[i, ids.index(m.id)], rel=1e-4, abs=1e-6)
    clock.advance(6.0)  # n2 (ttl 5) has expired, n0 (ttl 10) not yet
    assert engine.count("b") == 6


def test_a_sharded_bank_takes_forgetting_beside_a_one_shard_bank(engine_clock: Any) -> None:
    """Strengths, lifetimes and reinforce on a sharded bank (test_shards_forgetting.py has the
    equivalence); the reaper walks both banks and reports the earliest expiry of either."""
    engine, clock = engine_clock
    engine.create_bank("s", BankConfig(dim=8, beta=BETA, shards=3, half_life_s=60.0))
    engine.create_bank("one", BankConfig(dim=8, beta=BETA, default_ttl_s=100.0))
    xi = _unit(30, 8, 2)
    engine.upsert("s", xi, ids=[f"m{i}" for i in range(30)])
    engine.upsert("s", xi[:1], ids=["x"], strengths=[2.0], ttl_s=[50.0])
    assert engine.reinforce("s", ["m1", "gone"]) == 1
    assert engine.count("s") == 31
    engine.upsert("one", xi[:2], ids=["a", "b"])
    assert engine.reap() == pytest.approx(T0 + 50.0)  # the sharded bank's "x"
    got = engine.get_memory("s", "x").to_dict()
    assert got["id"] == "x" and got["strength"] == 2.0
    res = engine.query("s", xi[1:3], steps=0, top_k=1)
    assert [r.matches[0].id for r in res.results] == ["m1", "m2"]
    clock.advance(50.0)
    engine.reap()
    assert engine.count("s") == 30 and "x" not in engine._banks["s"].bank


def test_novelty_on_a_sharded_bank_matches_the_reference(engine_clock: Any) -> None:
    engine, _ = engine_clock
    engine.create_bank("s", BankConfig(dim=8, beta=BETA, shards=4))
    xi = _unit(20, 8, 3)
    engine.upsert("s", xi, ids=[f"m{i}" for i in range(20)])
    x = np.concatenate([xi[:3] + 1e-3, _unit(3, 8, 4)]).astype(np.float32)
    records, _ = engine.scroll("s", 100, None, with_vectors=True)
    before = np.array([r.vector for r in records], dtype=np.float64)
    want, _, _ = ref.novelty(before, x, BETA, -0.2)
    res = engine.upsert("s", x, ids=[f"x{i}" for i in range(6)], if_novel=-0.2)
    assert res.ids == [f"x{i}" for i in range(6) if want[i]]
    assert engine.count("s") == 20 + int(want.sum())
