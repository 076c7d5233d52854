"""Cluster banks on the gathered view over the real 3-node local Ray cluster (started once
for the package, conftest.py): dynamics, diagnostics and Model A answers, snapshot export
and import (other shard counts, replicated), PATCH and a router restart — the router's
`ClusterEngine` run in this test process, compared with in-process banks given the
memories in the gathered order (docs/cluster.md). The same over fake Ray, in the default
run: tests/unit/test_cluster_gather.py.

Slow: `python -m pytest -q -m slow tests/cluster/test_gather.py`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from lam_engine.shards import shard_of
from lam_engine.store import snapshot as snapshot_io
from tests import reference as ref

pytest.importorskip("ray")
pytestmark = pytest.mark.slow
D, BETA, K = 6, 3.0, 3


def _same_dynamics(got: Any, want: Any) -> None:
    np.testing.assert_allclose(got.state, want.state, atol=1e-5)
    np.testing.assert_allclose(got.energy, want.energy, rtol=1e-5, atol=1e-5)
    assert [h["id"] for h in got.hidden_top] == [h["id"] for h in want.hidden_top]


def test_gathered_reads_snapshots_and_patch_on_a_real_cluster(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    from lam_cluster.backend import ClusterEngine

    rng = np.random.default_rng(21)
    xi = (rng.normal(size=(45, D)) / np.sqrt(D)).astype(np.float32)
    ids = [f"m{i}" for i in range(45)]
    payloads = [{"i": i} for i in range(45)]
    order = sorted(range(45), key=lambda i: shard_of(ids[i], K))  # the gathered order
    router = ClusterEngine(tmp_path / "router", "auto")
    local = Engine.open(None)
    try:
        router.create_bank("g", BankConfig(dim=D, beta=BETA, shards=K, replicas=2))
        router.upsert("g", xi[:20], ids[:20], payloads[:20])
        router.upsert("g", xi[20:], ids[20:], payloads[20:])
        for name, shards in (("one", 1), ("sh", K)):
            local.create_bank(name, BankConfig(dim=D, beta=BETA, shards=shards))
            local.upsert(name, xi[order], [ids[i] for i in order], [payloads[i] for i in order])
        state = xi[4] + 0.1
        got = router.dynamics("g", state, t_max=2.0, dt=0.05)
        for name in ("one", "sh"):
            _same_dynamics(got, local.dynamics(name, state, t_max=2.0, dt=0.05))
        assert all(np.diff(got.energy) <= 1e-6)  # the two-layer energy never increases
        d, w = router.diagnostics("g", beta=8.0), local.diagnostics("one", beta=8.0)
        assert (d.count, d.n_meeting, d.n_separable, d.method, d.failing_total) == (
            w.count, w.n_meeting, w.n_separable, w.method, w.failing_total
        )  # fmt: skip
        assert [x["id"] for x in d.failing] == [x["id"] for x in w.failing]
        np.testing.assert_allclose([d.max_norm, d.threshold], [w.max_norm, w.threshold], rtol=1e-6)
        # Model A: gathered
        router.create_bank("a", BankConfig(dim=D, beta=BETA, model="A", shards=2))
        router.upsert("a", xi, ids, payloads)
        local.create_bank("a", BankConfig(dim=D, beta=BETA, model="A"))
        a_order = sorted(range(45), key=lambda i: shard_of(ids[i], 2))
        local.upsert("a", xi[a_order], [ids[i] for i in a_order], [payloads[i] for i in a_order])
        for steps in (0, 1, 3):
            g = router.query("a", xi[:3] + 0.2, steps=steps, top_k=3).results
            w2 = local.query("a", xi[:3] + 0.2, steps=steps, top_k=3).results
            for x, y in zip(g, w2, strict=True):
                np.testing.assert_allclose(x.state, y.state, atol=1e-5)
                assert [m.id for m in x.matches] == [m.id for m in y.matches]
        # snapshot: cluster → file → one-shard bank → file → cluster with 2 shards × 2
        f = io.BytesIO()
        router.export_snapshot("g", f)
        snap = snapshot_io.read_snapshot(io.BytesIO(f.getvalue()))
        assert snap.ids == [ids[i] for i in order]
        np.testing.assert_array_equal(snap.vectors, xi[order])
        local.import_snapshot("back", io.BytesIO(f.getvalue()), shards=1)
        g2 = io.BytesIO()
        local.export_snapshot("back", g2)
        info = router.import_snapshot("g2", io.BytesIO(g2.getvalue()), shards=2)
        assert info.count == 45 and info.config.shards == 2
        q = (xi[:4] + 0.2 * rng.normal(size=(4, D))).astype(np.float32)
        for steps in (0, 1, 5):
            want = local.query("back", q, steps=steps, top_k=3).results
            states, _, _ = ref.retrieve(xi, q, BETA, steps=steps)
            for x, y, s in zip(router.query("g2", q, steps=steps, top_k=3).results, want, states,
                               strict=True):  # fmt: skip
                np.testing.assert_allclose(x.state, y.state, atol=1e-5)
                np.testing.assert_allclose(x.state, s, atol=1e-4 * (1 + np.abs(s).max()))
                assert [m.id for m in x.matches] == [m.id for m in y.matches]
        # PATCH, then a restarted router: kept, on every replica
        router.update_bank("g", beta=5.0)
        router.close()
        router = ClusterEngine(tmp_path / "router", "auto")
        assert router.bank_info("g").config.beta == 5.0
        bank = router._banks["g"]
        import ray

        for row in bank.replicas:
            for rep in row:
                assert ray.get(rep.handle.config.remote())["beta"] == 5.0
        local.update_bank("one", beta=5.0)
        for x, y in zip(router.query("g", q, steps=2).results,
                        local.query("one", q, steps=2).results, strict=True):  # fmt: skip
            np.testing.assert_allclose(x.state, y.state, atol=1e-5)
    finally:
        for name in router.bank_names():
            router.delete_bank(name)
        local.close()
