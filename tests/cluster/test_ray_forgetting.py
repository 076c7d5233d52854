"""Forgetting and the novelty gate on a real 3-node local Ray cluster (slow: the package's
cluster, tests/cluster/conftest.py). The replicas are real actors in their own processes,
each with its own engine clock: every call carries the router's (now, t_ref), so a bank
with strengths, a half-life, lifetimes and reinforce answers as the in-process one-shard
bank at the same instants. The deterministic cases are tests/unit/test_cluster_forgetting.py
and test_cluster_novelty_text.py (fake Ray)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from lam_engine.clock import ManualClock

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

T0 = 1.8e9


def test_forgetting_and_novelty_on_real_replicas(cluster: dict[str, Any]) -> None:
    from lam_cluster import forgetting
    from lam_cluster.novelty import gate
    from lam_cluster.router import ClusterBank

    rng = np.random.default_rng(2)
    n, d = 30, 6
    xi = (rng.normal(size=(n, d)) / math.sqrt(d)).astype(np.float32)
    ids = [f"m{i}" for i in range(n)]
    s = [float(x) for x in rng.uniform(0.3, 4.0, n)]
    exp = np.array([T0 + 5.0 if i % 4 == 0 else math.inf for i in range(n)])
    clock = ManualClock(T0)
    cfg = BankConfig(dim=d, beta=4.0, shards=3, replicas=2, half_life_s=10.0)
    bank = ClusterBank.create("fg", cfg, [m["name"] for m in cluster["nodes"]], "t1", clock)
    local = Engine.open(None, clock=clock)
    local.create_bank("one", BankConfig(dim=d, beta=4.0, half_life_s=10.0))
    try:
        batch = bank.prepare(xi, ids, None, strengths=np.array(s), expires=exp, stored_at=T0)
        bank.store(batch, t=T0)
        ttl = [5.0 if i % 4 == 0 else None for i in range(n)]
        local.upsert("one", xi, ids=ids, strengths=s, ttl_s=ttl)
        clock.advance(3.0)
        assert forgetting.reinforce(bank, ["m1", "m2", "zz"], 3.0) == 2
        assert local.reinforce("one", ["m1", "m2", "zz"], strength=3.0) == 2
        clock.advance(4.0)  # the memories with a lifetime have expired
        assert bank.count() == local.count("one") == n - len(range(0, n, 4))
        q = (xi[:4] + 0.2 * rng.normal(size=(4, d))).astype(np.float32)
        for steps in (0, 1, 3):
            got = bank.query(q, steps=steps, top_k=3).results
            want = local.query("one", q, steps=steps, top_k=3).results
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g.state, w.state, atol=1e-5)
                assert abs(g.energy - w.energy) <= 1e-5 * (1 + abs(w.energy))
                assert [m.id for m in g.matches] == [m.id for m in w.matches]
                np.testing.assert_allclose(
                    [m.weight for m in g.matches], [m.weight for m in w.matches], atol=1e-5
                )
        assert forgetting.reap(bank) == math.inf  # deleted on every replica
        for sh in range(3):
            (a, _, _), (b, _, _) = bank.records(sh)
            assert sorted(a) == sorted(b) and not {f"m{i}" for i in range(0, n, 4)} & set(a)
        dup = (xi[[1, 5]] + 0.01).astype(np.float32)
        new = bank.prepare(dup, ["d1", "d5"], None, stored_at=clock.now())
        got_up = bank.store(new, gate=gate(-0.3, None, 64 << 20))
        want_up = local.upsert("one", dup, ids=["d1", "d5"], if_novel=-0.3)
        assert got_up.ids == want_up.ids
        assert want_up.skipped is not None and got_up.skipped is not None
        assert [(k.id, k.nearest) for k in got_up.skipped] == [
            (k.id, k.nearest) for k in want_up.skipped
        ]
    finally:
        bank.destroy()
        local.close()
