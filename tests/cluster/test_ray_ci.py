"""The real-cluster checks trimmed for CI (issue 13: CI runs the cluster tests in its budget).

(Named to sort after test_local_cluster.py, whose slow test starts a cluster of its own on
the same addresses before the package fixture starts the shared one.)

On the package's one 3-node cluster (conftest.py), each shows only what needs a real
cluster — the logic itself is tested exhaustively over in-process actors in the default run
(tests/unit/test_cluster_router.py, test_cluster_ops.py):

- equivalence: a bank of 3 shards (R = 1: three actors, one per node) answers over real Ray
  calls (pickled arrays, actors in other processes) as the in-process sharded bank and
  tests/reference.py, for steps 0, 1, 5 at β 0.5 and 64, with a mask and a filter;
- the router over HTTP: the real `python -m service` with LAM_CLUSTER=ray creates a 2 × 2
  bank, stores (JSON, and .npy by content id), answers queries as a one-shard bank,
  GET /v1/cluster shows the real nodes and the replicas on distinct ones, its /metrics the
  per-shard calls, and a restarted router finds the bank with its memories.

The long versions (more cases, deletes, scroll, refusals) are test_ray_bank.py's and
test_router.py's; node loss is test_ray_bank.py's (LAM_CHAOS_KILLS, default 5).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from tests import reference as ref
from tests.harness.server import LamServer

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.cluster_ci]
D = 6


def test_cluster_answers_equal_in_process_shards_and_reference_ci(
    cluster: dict[str, Any],
) -> None:
    from lam_cluster.router import ClusterBank

    rng = np.random.default_rng(5)
    xi = (rng.normal(size=(60, D)) / np.sqrt(D)).astype(np.float32)
    ids, payloads = [f"m{i}" for i in range(60)], [{"odd": i % 2} for i in range(60)]
    bank = ClusterBank.create("eqci", BankConfig(dim=D, beta=3.0, shards=3), _nodes(cluster))
    try:
        bank.upsert(ids, xi, payloads)
        local = Engine.open(None)
        local.create_bank("eq", BankConfig(dim=D, beta=3.0, shards=3))
        local.upsert("eq", xi, ids=ids, payloads=payloads)
        q = (xi[:3] + 0.2 * rng.normal(size=(3, D))).astype(np.float32)
        for beta in (0.5, 64.0):
            for steps in (0, 1, 5):
                got = bank.query(q, beta=beta, steps=steps, top_k=3).results
                want = local.query("eq", q, beta=beta, steps=steps, top_k=3).results
                states, _, _ = ref.retrieve(xi, q, beta, steps=steps)
                for g, w, s in zip(got, want, states, strict=True):
                    np.testing.assert_allclose(g.state, w.state, atol=1e-6)
                    np.testing.assert_allclose(g.state, s, atol=1e-4 * (1 + np.abs(s).max()))
                    assert abs(g.energy - w.energy) <= 1e-5 * (1 + abs(w.energy))
                    assert [m.id for m in g.matches] == [m.id for m in w.matches]
        flt = {"must": [{"key": "odd", "match": {"value": 1}}]}
        got = bank.query(q, steps=2, top_k=3, flt=flt).results
        want = local.query("eq", q, steps=2, top_k=3, filter=flt).results
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g.state, w.state, atol=1e-6)
            assert [m.id for m in g.matches] == [m.id for m in w.matches]
            assert all(m.payload == {"odd": 1} for m in g.matches)
        # one actor per node: three processes, three nodes
        assert len({ray.get(row[0].handle.node_id.remote()) for row in bank.replicas}) == 3
    finally:
        bank.destroy()


def _nodes(cluster: dict[str, Any]) -> list[str]:
    return [n["name"] for n in cluster["nodes"]]


def _npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def test_router_serves_a_replicated_bank_over_http_ci(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    env = {"LAM_CLUSTER": "ray", "LAM_RAY_ADDRESS": cluster["address"]}
    server = LamServer(tmp_path / "router", tmp_path / "router.log", env=env)
    server.start(timeout=120)
    rng = np.random.default_rng(13)
    xi = (rng.normal(size=(30, D)) / np.sqrt(D)).astype(np.float32)
    local = Engine.open(None)
    local.create_bank("one", BankConfig(dim=D, beta=3.0))
    try:
        c = httpx.Client(base_url=server.url, timeout=120)
        body = {"name": "ci", "dim": D, "beta": 3.0, "shards": 2, "replicas": 2}
        r = c.post("/v1/banks", json=body)
        assert r.status_code == 201, r.text
        mems = [{"id": f"m{i}", "vector": xi[i].tolist(), "payload": {"i": i}} for i in range(20)]
        assert c.post("/v1/banks/ci/memories", json={"memories": mems}).status_code == 200
        local.upsert("one", xi[:20], ids=[f"m{i}" for i in range(20)],
                     payloads=[{"i": i} for i in range(20)])  # fmt: skip
        r = c.post("/v1/banks/ci/memories", content=_npy(xi[20:]),
                   headers={"content-type": "application/x-npy"})  # fmt: skip
        assert r.status_code == 200 and r.json()["count"] == 30, r.text
        assert r.json()["ids"] == local.upsert("one", xi[20:]).ids
        q = (xi[:3] + 0.3 * rng.normal(size=(3, D))).astype(np.float32)
        mask = np.ones_like(q, dtype=bool)
        mask[:, :2] = False
        for steps, m in ((0, None), (3, None), (3, mask)):
            req: dict[str, Any] = {"queries": q.tolist(), "steps": steps, "top_k": 3}
            if m is not None:
                req["mask"] = m.tolist()
            r = c.post("/v1/banks/ci/query", json=req)
            assert r.status_code == 200, r.text
            want = local.query("one", q, mask=m, steps=steps, top_k=3).results
            for g, w in zip(r.json()["results"], want, strict=True):
                np.testing.assert_allclose(g["state"], w.state, atol=1e-5)
                assert abs(g["energy"] - w.energy) <= 1e-5 * (1 + abs(w.energy))
                assert [x["id"] for x in g["matches"]] == [x.id for x in w.matches]
                np.testing.assert_allclose([x["weight"] for x in g["matches"]],
                                           [x.weight for x in w.matches], atol=1e-5)  # fmt: skip
        d = c.get("/v1/cluster").json()
        assert sorted(n["node_id"] for n in d["nodes"]) == sorted(_nodes(cluster))
        assert all(n["alive"] and n["address"].startswith("127.0.0.") for n in d["nodes"])
        (bank,) = [b for b in d["banks"] if b["name"] == "ci"]
        for s in bank["shards"]:
            assert [x["state"] for x in s["replicas"]] == ["active", "active"]
            assert len({x["node_id"] for x in s["replicas"]}) == 2
        metrics = c.get("/metrics").text
        for s in ("0", "1"):  # the router's per-shard series, from real calls
            assert (
                f'lam_cluster_calls_total{{bank="ci",method="dense",outcome="ok",shard="{s}"}}'
                in metrics
            )
        assert (
            'lam_cluster_replica_state{bank="ci",replica="1",shard="1",state="active"} 1.0'
            in metrics
        )
        before = c.post("/v1/banks/ci/query", json={"queries": q.tolist(), "steps": 2}).json()
        c.close()
        server.stop()
        server.start(timeout=120)
        c = httpx.Client(base_url=server.url, timeout=120)
        assert c.get("/v1/banks/ci").json()["count"] == 30
        after = c.post("/v1/banks/ci/query", json={"queries": q.tolist(), "steps": 2}).json()
        assert after == before
        assert c.delete("/v1/banks/ci").status_code in (200, 204)
        c.close()
    finally:
        print(server.tail())
        server.stop()
