"""Operating a cluster bank, without a cluster (the replicas run in this process,
tests/harness/fake_ray.py): a shard with no live replica answers 503 `shard_unavailable`
with Retry-After for reads and writes (never a 500), the SDK retries it, the shard serves
again when its node is back — and the lam_cluster_* metrics count the calls, bytes, merge
time, replica states, replicas marked dead and catch-ups."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lam_client import Client
from lam_cluster.observe import payload_bytes
from lam_engine import BankConfig, Engine
from lam_engine.shards import shard_of
from service import Settings, create_app
from tests.api.api_support import wait_ready
from tests.harness.fake_ray import FakeRay
from tests.harness.fake_router import install_fake_ray

D = 4


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: Any) -> FakeRay:
    return install_fake_ray(tmp_path, monkeypatch)


@pytest.fixture
def c(tmp_path: Path, fake: FakeRay) -> Iterator[TestClient]:
    settings = Settings(cluster="ray", data_dir=tmp_path / "router", ray_address="auto")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def _ids_of_shard(s: int, k: int, n: int = 3) -> list[str]:
    return [i for i in (f"m{j}" for j in range(200)) if shard_of(i, k) == s][:n]


def _unavailable(r: httpx.Response, shard: int) -> None:
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "shard_unavailable", r.text
    assert f"shard {shard}" in err["message"] and "'b'" in err["message"], err
    assert err["details"] == {"bank": "b", "shard": shard}
    assert r.headers["Retry-After"] == "1"


def _store(c: TestClient, ids: list[str], rng: np.random.Generator) -> httpx.Response:
    mems = [{"id": i, "vector": rng.normal(size=D).tolist()} for i in ids]
    return c.post("/v1/banks/b/memories", json={"memories": mems})


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_shard_with_no_live_replica_is_503_until_its_node_is_back(
    c: TestClient, fake: FakeRay, replicas: int
) -> None:
    rng = np.random.default_rng(0)
    body = {"name": "b", "dim": D, "beta": 2.0, "shards": 3, "replicas": replicas}
    assert c.post("/v1/banks", json=body).status_code == 201
    ids = [f"m{j}" for j in range(30)]
    assert _store(c, ids, rng).status_code == 200
    # Replica r of shard s is on node (s + r) mod 3: shard 1 has none left without these.
    lost = ["node1", "node2"][:replicas]
    for node in lost:
        fake.kill_node(node)
    q = {"queries": rng.normal(size=(2, D)).tolist(), "steps": 2}
    _unavailable(c.post("/v1/banks/b/query", json=q), 1)
    _unavailable(c.post("/v1/banks/b/energy", json={"states": q["queries"]}), 1)
    _unavailable(c.get(f"/v1/banks/b/memories/{_ids_of_shard(1, 3)[0]}"), 1)
    _unavailable(c.post("/v1/banks/b/memories/count", json={}), 1)
    _unavailable(c.get("/v1/banks/b"), 1)
    _unavailable(_store(c, _ids_of_shard(1, 3), rng), 1)  # writes too
    _unavailable(c.post("/v1/banks/b/memories/delete", json={"ids": _ids_of_shard(1, 3)}), 1)
    # A write owned by shard 0 alone lands (shard 0 keeps a replica on node0), but its answer
    # holds the bank's count, which needs shard 1: 503 as well (a retry is idempotent).
    moved = rng.normal(size=(3, D))
    mems = [
        {"id": i, "vector": v.tolist()} for i, v in zip(_ids_of_shard(0, 3), moved, strict=True)
    ]
    _unavailable(c.post("/v1/banks/b/memories", json={"memories": mems}), 1)
    metrics = c.get("/metrics").text
    assert 'lam_errors_total{code="shard_unavailable"} 8.0' in metrics
    # The node is back: the shard serves again (R = 1: its own replica, which holds every
    # write acknowledged on it), with the answer of a one-shard bank of the same memories.
    for node in lost:
        fake.revive_node(node)
    r = c.post("/v1/banks/b/query", json=q)
    assert r.status_code == 200, r.text
    assert c.get("/v1/banks/b").json()["count"] == 30
    got = c.get(f"/v1/banks/b/memories/{_ids_of_shard(0, 3)[0]}").json()["vector"]
    np.testing.assert_allclose(got, moved[0], atol=1e-6)  # the write to shard 0 landed
    d = c.get("/v1/cluster").json()
    assert all(x["state"] == "active" for s in d["banks"][0]["shards"] for x in s["replicas"])


def test_a_replica_behind_never_serves_first(c: TestClient, fake: FakeRay) -> None:
    """R = 2, shard 1 on node1 and node2: node1 is lost, writes go on to node2, then node2 is
    lost too. node1 coming back alone is behind (it missed acknowledged writes): the shard
    stays 503 rather than serve it; once node2 is back it serves and node1 catches up."""
    rng = np.random.default_rng(1)
    body = {"name": "b", "dim": D, "beta": 2.0, "shards": 3, "replicas": 2}
    assert c.post("/v1/banks", json=body).status_code == 201
    first, later = _ids_of_shard(1, 3, 6)[:3], _ids_of_shard(1, 3, 6)[3:]
    assert _store(c, first, rng).status_code == 200
    fake.kill_node("node1")
    assert _store(c, later, rng).status_code == 200  # on node2 only
    fake.kill_node("node2")
    fake.revive_node("node1")
    _unavailable(c.get(f"/v1/banks/b/memories/{later[0]}"), 1)
    fake.revive_node("node2")
    assert c.get(f"/v1/banks/b/memories/{later[0]}").status_code == 200
    bank = next(iter(c.app.state.rt.engine._banks.values()))  # type: ignore[attr-defined]
    (ids1, _, _), (ids2, _, _) = bank.records(1)
    assert sorted(ids1) == sorted(ids2) == sorted(first + later)


def test_the_sdk_retries_shard_unavailable(c: TestClient, fake: FakeRay) -> None:
    rng = np.random.default_rng(2)
    body = {"name": "b", "dim": D, "beta": 2.0, "shards": 2, "replicas": 1}
    assert c.post("/v1/banks", json=body).status_code == 201
    assert _store(c, [f"m{j}" for j in range(10)], rng).status_code == 200
    fake.kill_node("node1")  # shard 1's only replica
    statuses: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        r = c.request(request.method, request.url.path, content=request.read(),
                      headers=dict(request.headers))  # fmt: skip
        statuses.append(r.status_code)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    slept: list[float] = []

    def sleep(s: float) -> None:  # the client waits as told; meanwhile the node comes back
        slept.append(s)
        fake.revive_node("node1")

    with Client("http://lam.test", retries=3, transport=httpx.MockTransport(handle)) as sdk:
        sdk._backend.sleep = sleep  # type: ignore[attr-defined]
        res = sdk.query("b", rng.normal(size=(1, D)), top_k=2)
    assert statuses == [503, 200] and slept == [1.0]
    assert len(res.results[0].matches) == 2


def _samples(text: str, prefix: str = "lam_cluster_") -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith(prefix)
    ]


def _value(samples: Any, name: str, **labels: str) -> float:
    return sum(v for n, lb, v in samples if n == name and labels.items() <= lb.items())


def test_metrics_count_calls_bytes_merge_states_deaths_and_catch_ups(
    c: TestClient, fake: FakeRay
) -> None:
    rng = np.random.default_rng(3)
    xi = rng.normal(size=(40, D)).astype(np.float32)
    body = {"name": "b", "dim": D, "beta": 2.0, "shards": 3, "replicas": 2}
    assert c.post("/v1/banks", json=body).status_code == 201
    mems = [{"id": f"m{i}", "vector": xi[i].tolist(), "payload": {"i": i}} for i in range(40)]
    assert c.post("/v1/banks/b/memories", json={"memories": mems}).status_code == 200
    q = rng.normal(size=(3, D)).tolist()
    for steps in (0, 2):  # 1 and 3 dense rounds
        assert c.post("/v1/banks/b/query", json={"queries": q, "steps": steps}).status_code == 200
    assert c.post("/v1/banks/b/energy", json={"states": q}).status_code == 200
    assert c.post("/v1/banks/b/query", json={"queries": q, "filter": {"key": 1}}).status_code == 422
    m = _samples(c.get("/metrics").text)
    # one dense call per shard per round: (1 + 3) rounds of the queries, 1 of the energy
    for s in ("0", "1", "2"):
        assert _value(m, "lam_cluster_calls_total", shard=s, method="dense", outcome="ok") == 5
        assert _value(m, "lam_cluster_call_duration_seconds_count", shard=s, method="dense") == 5
        assert _value(m, "lam_cluster_shard_compute_seconds_count", shard=s, method="dense") == 5
        # every replica of the shard stored its part of the batch
        assert _value(m, "lam_cluster_calls_total", shard=s, method="upsert", outcome="ok") == 2
        # sizes: at least the arrays of the batch sent and of the partials received
        owned = sum(1 for i in range(40) if shard_of(f"m{i}", 3) == int(s))
        assert _value(m, "lam_cluster_sent_bytes_total", shard=s) >= 2 * owned * D * 4
        assert _value(m, "lam_cluster_received_bytes_total", shard=s) >= 5 * 3 * (D + 2) * 4
        for r in ("0", "1"):
            assert _value(m, "lam_cluster_replica_state", shard=s, replica=r, state="active") == 1
            assert _value(m, "lam_cluster_replica_state", shard=s, replica=r, state="dead") == 0
    assert _value(m, "lam_cluster_merge_seconds_count", bank="b") == 3  # 2 queries, 1 energy
    # a bad filter is refused in the router before any replica call: no call counted for it
    assert _value(m, "lam_cluster_calls_total", outcome="refused") == 0
    assert _value(m, "lam_cluster_calls_total", outcome="failed") == 0
    # node1 lost (replica 1 of shard 0, replica 0 of shard 1): marked dead when first asked
    fake.kill_node("node1")
    mems2 = [{"id": f"n{i}", "vector": xi[i].tolist()} for i in range(12)]
    assert c.post("/v1/banks/b/memories", json={"memories": mems2}).status_code == 200
    m = _samples(c.get("/metrics").text)
    for s, r in (("0", "1"), ("1", "0")):
        assert _value(m, "lam_cluster_replicas_marked_dead_total", shard=s) == 1
        assert _value(m, "lam_cluster_replica_state", shard=s, replica=r, state="dead") == 1
        assert _value(m, "lam_cluster_replica_state", shard=s, replica=r, state="active") == 0
    assert _value(m, "lam_cluster_replicas_marked_dead_total", shard="2") == 0
    assert _value(m, "lam_cluster_calls_total", method="upsert", outcome="failed") == 2
    fake.revive_node("node1")
    assert c.get("/v1/banks/b").status_code == 200  # a read probes, the two catch up
    m = _samples(c.get("/metrics").text)
    for s, r in (("0", "1"), ("1", "0")):
        assert _value(m, "lam_cluster_catchups_total", shard=s, outcome="ok") == 1
        assert _value(m, "lam_cluster_replica_state", shard=s, replica=r, state="active") == 1
    snap = _value(m, "lam_cluster_received_bytes_total", shard="0")
    assert _value(m, "lam_cluster_calls_total", shard="0", method="snapshot", outcome="ok") == 1
    assert snap > 0
    # bounded labels: bank names, shard/replica indexes, method and state names; never an id
    allowed = re.compile(r"^(b|\d+|[a-z_]+|[0-9.e+]+|\+Inf)$")
    for _, labels, _ in m:
        assert all(allowed.match(v) for v in labels.values()), labels
        assert not any(v.startswith(("m", "n")) and v[1:].isdigit() for v in labels.values())
    # the bank deleted: its series go
    assert c.delete("/v1/banks/b").status_code == 204
    assert _samples(c.get("/metrics").text) == []


def test_payload_bytes_estimates_without_pickling() -> None:
    v = np.zeros((3, 5), np.float32)
    assert payload_bytes(v) == 60
    assert payload_bytes((7, v, ["ab", None], {"k": b"xyz"})) == 8 + 60 + 2 + 8 + 1 + 3


def test_merge_time_is_the_router_time_outside_the_calls(fake: FakeRay) -> None:
    """ClusterBank.timed: wall time less the waits on calls (the fake's calls run at submit,
    so the waits are ≈ 0 and the merge time is ≈ the whole read, both recorded)."""
    from lam_cluster.router import ClusterBank

    class Rec:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []
            self.merges: list[float] = []

        def call(self, *args: Any) -> None:
            self.calls.append(args)

        def merge(self, bank: str, seconds: float) -> None:
            self.merges.append(seconds)

        def replica_state(self, *args: Any) -> None: ...
        def catch_up(self, *args: Any) -> None: ...
        def marked_dead(self, *args: Any) -> None: ...
        def forget(self, bank: str) -> None: ...

    rec = Rec()
    cfg = BankConfig(dim=D, beta=2.0, shards=2)
    bank = ClusterBank.create("t", cfg, ["node0", "node1"], observer=rec)
    rng = np.random.default_rng(4)
    xi = rng.normal(size=(20, D)).astype(np.float32)
    bank.upsert([f"m{i}" for i in range(20)], xi)
    res = bank.query(xi[:2], steps=1, top_k=3)
    one = Engine.open(None)
    one.create_bank("o", BankConfig(dim=D, beta=2.0))
    one.upsert("o", xi, ids=[f"m{i}" for i in range(20)])
    want = one.query("o", xi[:2], steps=1, top_k=3)
    np.testing.assert_allclose(res.results[0].state, want.results[0].state, atol=1e-5)
    assert len(rec.merges) == 1 and rec.merges[0] > 0
    dense = [a for a in rec.calls if a[2] == "dense"]
    assert len(dense) == 2 * 2  # one call per shard per round: the step and the last pass
    assert all(a[3] == "ok" and a[7] is not None and a[7] >= 0 for a in dense)
    bank.destroy()
