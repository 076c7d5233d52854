"""Cluster mode (LAM_CLUSTER=ray) without a cluster: settings, the refusal of replicas > 1
outside it, and the router over HTTP with the replica actors run in this process
(tests/harness/fake_ray.py) — answers equal an in-process one-shard bank's, node loss and
catch-up, the coordinator after a router restart. The real 3-node cluster: the slow
tests/cluster/test_router.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from lam_engine import BankConfig, Engine
from service import Settings, create_app
from tests.api.api_support import wait_ready
from tests.harness.fake_ray import FakeRay
from tests.harness.fake_router import install_fake_ray

D, BETA = 5, 2.5
ROOT = Path(__file__).resolve().parents[2]


def test_cluster_settings_default_off_and_parse_the_environment(monkeypatch: Any) -> None:
    s = Settings()
    assert (s.cluster, s.ray_address) == ("off", "auto")
    monkeypatch.setenv("LAM_CLUSTER", "RAY")
    monkeypatch.setenv("LAM_RAY_ADDRESS", "127.0.0.2:6379")
    s = Settings()
    assert (s.cluster, s.ray_address) == ("ray", "127.0.0.2:6379")
    with pytest.raises(ValidationError):
        Settings(cluster="kubernetes")


def test_without_ray_the_service_runs_and_refuses_replicas(tmp_path: Path) -> None:
    """Ray is optional: with it unimportable, cluster off, replicas > 1 is cluster_required."""
    code = f"""
import sys
sys.modules["ray"] = None  # import ray now fails
from fastapi.testclient import TestClient
from service import Settings, create_app
from tests.api.api_support import wait_ready
with TestClient(create_app(Settings(data_dir={str(tmp_path)!r}))) as c:
    wait_ready(c)
    r = c.post("/v1/banks", json={{"name": "r", "dim": 2, "replicas": 2}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "cluster_required", r.text
    assert c.post("/v1/banks", json={{"name": "s", "dim": 2, "shards": 2}}).status_code == 201
    assert "ray" not in {{m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}}
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: Any) -> FakeRay:
    return install_fake_ray(tmp_path, monkeypatch)


@pytest.fixture
def router(tmp_path: Path, fake: FakeRay) -> Iterator[Any]:
    clients: list[TestClient] = []

    def start() -> TestClient:
        settings = Settings(cluster="ray", data_dir=tmp_path / "router", ray_address="auto")
        c = TestClient(create_app(settings), raise_server_exceptions=False)
        c.__enter__()
        wait_ready(c)
        clients.append(c)
        return c

    yield start
    for c in clients:
        c.__exit__(None, None, None)


def _error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def _same(got: list[dict[str, Any]], want: Any) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["state"], w.state, atol=1e-5)
        assert abs(g["energy"] - w.energy) <= 1e-5 * (1 + abs(w.energy))
        assert [m["id"] for m in g["matches"]] == [m.id for m in w.matches]
        assert [m["payload"] for m in g["matches"]] == [m.payload for m in w.matches]
        np.testing.assert_allclose(
            [m["weight"] for m in g["matches"]], [m.weight for m in w.matches], atol=1e-5
        )


def test_router_answers_as_one_bank_survives_a_node_and_a_restart(
    router: Any, fake: FakeRay
) -> None:
    c = router()
    rng = np.random.default_rng(7)
    xi = rng.normal(size=(50, D)).astype(np.float32)
    local = Engine.open(None)
    local.create_bank("one", BankConfig(dim=D, beta=BETA, normalize=True))
    body = {"name": "b", "dim": D, "beta": BETA, "normalize": True, "shards": 3, "replicas": 2}
    _error(c.post("/v1/banks", json={**body, "replicas": 4}), 422, "invalid_parameter")
    assert c.post("/v1/banks", json=body).status_code == 201
    assert c.post("/v1/banks", json=body).status_code == 200  # the same config again
    _error(c.post("/v1/banks", json={**body, "beta": 1.0}), 409, "bank_exists")
    mems = [{"id": f"m{i}", "vector": xi[i].tolist(), "payload": {"i": i, "odd": i % 2}}
            for i in range(30)]  # fmt: skip
    assert c.post("/v1/banks/b/memories", json={"memories": mems}).json()["count"] == 30
    local.upsert("one", xi[:30], ids=[f"m{i}" for i in range(30)],
                 payloads=[{"i": i, "odd": i % 2} for i in range(30)])  # fmt: skip
    r = c.post("/v1/banks/b/memories", json={"memories": [{"vector": v.tolist()} for v in xi[30:]]})
    assert r.json()["ids"] == local.upsert("one", xi[30:]).ids  # content ids, as one bank's
    _error(c.post("/v1/banks/b/memories", json={"memories": [{"vector": [1.0]}]}), 422,
           "dimension_mismatch")  # fmt: skip
    q = (xi[:3] + 0.4 * rng.normal(size=(3, D))).astype(np.float32)
    mask = np.ones_like(q, dtype=bool)
    mask[:, 0] = False
    flt = {"must": [{"key": "odd", "match": {"value": 1}}]}
    for steps in (0, 1, 5):
        for m, f in ((None, None), (mask, None), (None, flt)):
            req: dict[str, Any] = {"queries": q.tolist(), "steps": steps, "top_k": 4,
                                   "with_vectors": True}  # fmt: skip
            req.update({"mask": m.tolist()} if m is not None else {})
            req.update({"filter": f} if f is not None else {})
            r = c.post("/v1/banks/b/query", json=req)
            assert r.status_code == 200, r.text
            want = local.query("one", q, mask=m, filter=f, steps=steps, top_k=4, with_vectors=True)
            _same(r.json()["results"], want.results)
            for g, w in zip(r.json()["results"], want.results, strict=True):
                np.testing.assert_allclose([x["vector"] for x in g["matches"]],
                                           [x.vector for x in w.matches], atol=1e-6)  # fmt: skip
    ebody = {"states": q.tolist(), "constants": True, "gradient": True, "filter": flt}
    r = c.post("/v1/banks/b/energy", json=ebody)
    e = local.energy("one", q, constants=True, gradient=True, filter=flt)
    np.testing.assert_allclose(r.json()["energies"], e.energies, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.json()["gradients"], e.gradients, atol=1e-5)
    _error(c.post("/v1/banks/b/query", json={"queries": q.tolist(), "filter": {"key": 3}}), 422,
           "invalid_filter")  # fmt: skip
    _error(c.post("/v1/banks/b/query", json={"queries": q.tolist(), "filter": {
        "must": [{"key": "odd", "match": {"value": 7}}]}}), 409, "empty_selection")  # fmt: skip
    # get / count / scroll / delete
    got = c.get("/v1/banks/b/memories/m3").json()
    assert got["payload"] == {"i": 3, "odd": 1}
    np.testing.assert_allclose(got["vector"], local.get_memory("one", "m3").vector, atol=1e-7)
    _error(c.get("/v1/banks/b/memories/nope"), 404, "memory_not_found")
    assert c.post("/v1/banks/b/memories/count", json={"filter": flt}).json()["count"] == 15
    seen, cursor = [], None
    while True:
        page = c.get(
            "/v1/banks/b/memories", params={"limit": 8, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [m["id"] for m in page["memories"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == sorted(r.id for r in local.scroll("one", 100)[0])
    _error(c.get("/v1/banks/b/memories", params={"cursor": str(9 << 40)}), 422, "invalid_parameter")
    r = c.post(
        "/v1/banks/b/memories/delete", json={"filter": {"must": [{"key": "i", "range": {"lt": 4}}]}}
    )
    assert r.status_code == 200 and r.json()["deleted"] == 4, r.text
    local.delete_memories("one", [f"m{i}" for i in range(4)])
    r = c.post("/v1/banks/b/memories/delete", json={"ids": ["m5", "m6", "m5", "nope"]})
    assert r.json()["deleted"] == 2, r.text
    local.delete_memories("one", ["m5", "m6"])
    assert c.delete("/v1/banks/b/memories/m6").status_code == 404
    # (what was refused here works now: test_cluster_gather.py, test_cluster_forgetting.py)
    # a node is lost: reads and writes go on; it comes back and catches up
    fake.kill_node("node1")
    new = rng.normal(size=(10, D)).astype(np.float32)  # new vectors: no ties in the top-k
    extra = [{"id": f"x{i}", "vector": new[i].tolist()} for i in range(5)]
    assert c.post("/v1/banks/b/memories", json={"memories": extra}).status_code == 200
    local.upsert("one", new[:5], ids=[f"x{i}" for i in range(5)])
    want = local.query("one", q, steps=2).results
    _same(
        c.post("/v1/banks/b/query", json={"queries": q.tolist(), "steps": 2}).json()["results"],
        want,
    )
    d = c.get("/v1/cluster").json()
    assert {n["node_id"]: n["alive"] for n in d["nodes"]} == {
        "node0": True,
        "node1": False,
        "node2": True,
    }
    states = [r["state"] for s in d["banks"][0]["shards"] for r in s["replicas"]]
    assert states.count("dead") == 2 and states.count("active") == 4  # node1: 2 of 6 replicas
    fake.revive_node("node1")
    assert c.get("/v1/banks/b").json()["count"] == 49  # a read probes and catches up
    d = c.get("/v1/cluster").json()
    assert all(r["state"] == "active" for s in d["banks"][0]["shards"] for r in s["replicas"])
    bank = next(iter(c.app.state.rt.engine._banks.values()))
    for s in range(3):
        (ids0, v0, _), (ids1, v1, _) = bank.records(s)  # the replicas, caught up: equal
        assert sorted(ids0) == sorted(ids1) and len(ids0) > 0
        assert dict(zip(ids0, v0.tolist(), strict=True)) == dict(
            zip(ids1, v1.tolist(), strict=True)
        )
    # a restarted router (and actors restarted from their nodes' stores) finds the bank; the
    # replicas that missed writes while node2 was down are behind: caught up, not served
    fake.kill_node("node2")
    extra = [{"id": f"y{i}", "vector": new[i].tolist()} for i in range(5, 10)]
    assert c.post("/v1/banks/b/memories", json={"memories": extra}).status_code == 200
    local.upsert("one", new[5:], ids=[f"y{i}" for i in range(5, 10)])
    want = local.query("one", q, steps=2).results
    c.__exit__(None, None, None)
    fake.restart_actors()
    fake.revive_node("node2")
    c = router()
    bank = next(iter(c.app.state.rt.engine._banks.values()))
    assert bank.count() == 54
    for s in range(3):
        (ids0, v0, _), (ids1, v1, _) = bank.records(s)
        assert sorted(ids0) == sorted(ids1)
    assert [b["name"] for b in c.get("/v1/banks").json()["banks"]] == ["b"]
    _same(
        c.post("/v1/banks/b/query", json={"queries": q.tolist(), "steps": 2}).json()["results"],
        want,
    )
    fake.kill_node("node0")  # its replicas' stores outlive the bank's deletion
    assert c.delete("/v1/banks/b").status_code == 204
    assert c.get("/v1/banks").json()["banks"] == [] and fake.actors == {}
    fake.revive_node("node0")
    assert c.post("/v1/banks", json=body).status_code == 201  # a new bank of that name: empty
    assert c.get("/v1/banks/b").json()["count"] == 0
    d = c.get("/v1/cluster").json()
    assert all(r["state"] == "active" for s in d["banks"][0]["shards"] for r in s["replicas"])


def test_router_prefilter_answers_as_the_in_process_sharded_bank(router: Any) -> None:
    """Each shard searches its own index (the candidate pass and its certificate run on the
    replicas): the answers are the in-process sharded bank's, whose shards do the same."""
    c = router()
    rng = np.random.default_rng(3)
    xi = rng.normal(size=(90, D)).astype(np.float32)
    pre = {"kind": "flat", "k": 6, "min_size": 1, "tolerance": 1e-2}
    local = Engine.open(None)
    local.create_bank("p", BankConfig.from_dict({"dim": D, "beta": 8.0, "shards": 3,
                                                 "prefilter": pre}))  # fmt: skip
    body = {"name": "p", "dim": D, "beta": 8.0, "shards": 3, "replicas": 2, "prefilter": pre}
    assert c.post("/v1/banks", json=body).status_code == 201
    ids = [f"p{i}" for i in range(90)]
    c.post("/v1/banks/p/memories", json={"memories": [
        {"id": i, "vector": v.tolist()} for i, v in zip(ids, xi, strict=True)]})  # fmt: skip
    local.upsert("p", xi, ids=ids)
    q = (xi[:4] + 0.05 * rng.normal(size=(4, D))).astype(np.float32)
    for steps in (0, 1, 3):
        r = c.post("/v1/banks/p/query", json={"queries": q.tolist(), "steps": steps, "top_k": 3})
        want = local.query("p", q, steps=steps, top_k=3)
        assert r.json()["prefiltered"] == want.prefiltered
        _same(r.json()["results"], want.results)
        np.testing.assert_allclose(
            [g["missed_mass_bound"] for g in r.json()["results"]],
            [w.missed_mass_bound for w in want.results], rtol=1e-4, atol=1e-9,
        )  # fmt: skip
    assert want.prefiltered  # the candidate path ran (not only the exact fallback)
