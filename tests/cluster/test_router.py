"""`python -m service` as a router (LAM_CLUSTER=ray) over the real 3-node local Ray cluster.

Slow: `python -m pytest -q -m slow tests/cluster/test_router.py` (the cluster comes up once
for the package, conftest.py). A bank of 3 shards × 2 replicas is created over HTTP, stored
into (JSON with ids, .npy with content ids), queried (steps 0, 1, 5; a mask; a filter),
its energies asked; every answer is compared with an in-process one-shard bank holding the
same memories, and with tests/reference.py. Then: get, count, scroll, deletes, the
refusals (422, never 500), GET /v1/cluster, and a router restart that finds the bank again.
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

pytestmark = pytest.mark.slow
D, BETA = 6, 3.0


def _npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def _same_answers(got: list[dict[str, Any]], want: Any, xi: np.ndarray, q: np.ndarray) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["state"], w.state, atol=1e-5)
        assert abs(g["energy"] - w.energy) <= 1e-5 * (1 + abs(w.energy))
        assert [m["id"] for m in g["matches"]] == [m.id for m in w.matches]
        assert [m["payload"] for m in g["matches"]] == [m.payload for m in w.matches]
        np.testing.assert_allclose(
            [m["weight"] for m in g["matches"]], [m.weight for m in w.matches], atol=1e-5
        )


def test_router_serves_a_sharded_replicated_bank_over_http(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    env = {"LAM_CLUSTER": "ray", "LAM_RAY_ADDRESS": cluster["address"]}
    server = LamServer(tmp_path / "router", tmp_path / "router.log", env=env)
    server.start(timeout=120)
    rng = np.random.default_rng(13)
    xi = (rng.normal(size=(60, D)) / np.sqrt(D)).astype(np.float32)
    local = Engine.open(None)
    local.create_bank("one", BankConfig(dim=D, beta=BETA))
    try:
        c = httpx.Client(base_url=server.url, timeout=120)
        body = {"name": "routed", "dim": D, "beta": BETA, "shards": 3, "replicas": 2}
        _error(c.post("/v1/banks", json={**body, "replicas": 4}), 422, "invalid_parameter")
        _error(c.post("/v1/banks", json={**body, "model": "A"}), 422, "invalid_parameter")
        r = c.post("/v1/banks", json=body)
        assert r.status_code == 201, r.text
        assert (r.json()["shards"], r.json()["replicas"], r.json()["count"]) == (3, 2, 0)
        _error(c.post("/v1/banks/routed/query", json={"queries": [[0.1] * D]}), 409, "empty_bank")
        # 40 with ids and payloads (JSON), 20 by content id (.npy)
        mems = [{"id": f"m{i}", "vector": xi[i].tolist(), "payload": {"i": i, "odd": i % 2}}
                for i in range(40)]  # fmt: skip
        r = c.post("/v1/banks/routed/memories", json={"memories": mems})
        assert r.status_code == 200 and r.json()["count"] == 40, r.text
        local.upsert("one", xi[:40], ids=[f"m{i}" for i in range(40)],
                     payloads=[{"i": i, "odd": i % 2} for i in range(40)])  # fmt: skip
        r = c.post("/v1/banks/routed/memories", content=_npy(xi[40:]),
                   headers={"content-type": "application/x-npy"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == local.upsert("one", xi[40:]).ids and r.json()["count"] == 60
        q = (xi[:4] + 0.3 * rng.normal(size=(4, D))).astype(np.float32)
        mask = np.ones_like(q, dtype=bool)
        mask[:, :2] = False
        for steps in (0, 1, 5):
            for m in (None, mask):
                req: dict[str, Any] = {"queries": q.tolist(), "steps": steps, "top_k": 4}
                if m is not None:
                    req["mask"] = m.tolist()
                r = c.post("/v1/banks/routed/query", json=req)
                assert r.status_code == 200, r.text
                want = local.query("one", q, mask=m, steps=steps, top_k=4).results
                _same_answers(r.json()["results"], want, xi, q)
                if m is None:
                    states, _, _ = ref.retrieve(xi, q, BETA, steps=steps)
                    got = np.array([g["state"] for g in r.json()["results"]])
                    np.testing.assert_allclose(got, states, atol=1e-4)
        flt = {"must": [{"key": "odd", "match": {"value": 1}}]}
        r = c.post("/v1/banks/routed/query", json={"queries": q.tolist(), "filter": flt})
        want = local.query("one", q, filter=flt).results
        _same_answers(r.json()["results"], want, xi, q)
        r = c.post("/v1/banks/routed/energy", json={"states": q.tolist(), "constants": True,
                                                     "gradient": True})  # fmt: skip
        assert r.status_code == 200, r.text
        e = local.energy("one", q, constants=True, gradient=True)
        np.testing.assert_allclose(r.json()["energies"], e.energies, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.json()["gradients"], e.gradients, atol=1e-5)
        # get, count, scroll (every memory once), deletes
        got = c.get("/v1/banks/routed/memories/m7").json()
        assert got["payload"] == {"i": 7, "odd": 1} and np.allclose(got["vector"], xi[7])
        _error(c.get("/v1/banks/routed/memories/nope"), 404, "memory_not_found")
        r = c.post("/v1/banks/routed/memories/count", json={"filter": flt})
        assert r.json()["count"] == 20
        seen, cursor = [], None
        while True:
            body2: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = c.post("/v1/banks/routed/memories/scroll", json=body2).json()
            seen += [m["id"] for m in page["memories"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert sorted(seen) == sorted(local.scroll("one", 100)[0][i].id for i in range(60))
        assert c.delete("/v1/banks/routed/memories/m7").status_code in (200, 204)
        _error(c.get("/v1/banks/routed/memories/m7"), 404, "memory_not_found")
        # what a cluster bank cannot do yet: 422, never 500
        _error(c.post("/v1/banks/routed/dynamics", json={"state": q[0].tolist()}), 422,
               "invalid_parameter")  # fmt: skip
        _error(c.get("/v1/banks/routed/diagnostics"), 422, "invalid_parameter")
        _error(c.get("/v1/banks/routed/snapshot"), 422, "invalid_parameter")
        # GET /v1/cluster: the real nodes, 3 shards × 2 active replicas on distinct nodes
        d = c.get("/v1/cluster").json()
        assert sorted(n["node_id"] for n in d["nodes"]) == sorted(
            n["name"] for n in cluster["nodes"]
        )
        assert all(n["alive"] and n["address"].startswith("127.0.0.") for n in d["nodes"])
        (bank,) = [b for b in d["banks"] if b["name"] == "routed"]
        assert [s["shard"] for s in bank["shards"]] == [0, 1, 2]
        for s in bank["shards"]:
            assert [r["state"] for r in s["replicas"]] == ["active", "active"]
            assert len({r["node_id"] for r in s["replicas"]}) == 2
        before = c.post("/v1/banks/routed/query", json={"queries": q.tolist(), "steps": 2}).json()
        # a restarted router finds its bank (the coordinator file) with its memories
        c.close()
        server.stop()
        server.start(timeout=120)
        c = httpx.Client(base_url=server.url, timeout=120)
        assert [b["name"] for b in c.get("/v1/banks").json()["banks"]] == ["routed"]
        assert c.get("/v1/banks/routed").json()["count"] == 59
        after = c.post("/v1/banks/routed/query", json={"queries": q.tolist(), "steps": 2}).json()
        assert after == before
        assert c.delete("/v1/banks/routed").status_code in (200, 204)
        assert c.get("/v1/banks").json()["banks"] == []
        c.close()
    finally:
        print(server.tail())
        server.stop()
