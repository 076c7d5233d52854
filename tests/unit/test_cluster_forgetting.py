"""Forgetting on cluster banks (API.md "Forgetting", "Sharded banks"), over HTTP against the
router with its replica actors in this process (tests/harness/fake_ray.py) and one
ManualClock for the router and the in-process banks it is compared with.

A 3 × 2 cluster bank with strengths, a half-life, lifetimes and reinforced memories answers
as the in-process one-shard and three-shard banks holding the same memories at the same
instants: states, energies (constants too), weights, top-k, GET and scroll fields, counts;
expired memories are hidden at once and deleted by the router's reaper on every replica; a
node lost while strengths are written and reinforced is caught up with its priors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from lam_engine.clock import ManualClock
from tests import reference as ref
from tests.harness.fake_router import FakeRouter

T0 = 1.8e9
D, BETA, N = 6, 4.0, 40


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: Any, clock: ManualClock) -> Iterator[FakeRouter]:
    out = FakeRouter(tmp_path, monkeypatch, clock)
    yield out
    out.stop()


def _ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _memories(ids: list[str], xi: np.ndarray, s: list[float], ttl: list[Any]) -> list[Any]:
    out = []
    for i, v, st, tt in zip(ids, xi, s, ttl, strict=True):
        m: dict[str, Any] = {"id": i, "vector": v.tolist(), "payload": {"k": i}, "strength": st}
        if tt is not None:
            m["ttl_s"] = tt
        out.append(m)
    return out


def _same_results(got: list[Any], want: Any, tol: float = 1e-5) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["state"], w.state, atol=tol)
        assert abs(g["energy"] - w.energy) <= tol * (1 + abs(w.energy))
        assert [m["id"] for m in g["matches"]] == [m.id for m in w.matches]
        np.testing.assert_allclose(
            [m["weight"] for m in g["matches"]], [m.weight for m in w.matches], atol=tol
        )
        np.testing.assert_allclose(
            [m["score"] for m in g["matches"]], [m.score for m in w.matches], atol=tol
        )


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "vector"}


def test_a_cluster_bank_forgets_as_one_bank(cluster: FakeRouter, clock: ManualClock) -> None:
    client, fake = cluster.start(), cluster.ray
    rng = np.random.default_rng(11)
    xi = (rng.normal(size=(N, D)) / math.sqrt(D)).astype(np.float32)
    ids = [f"m{i}" for i in range(N)]
    s = [float(x) for x in rng.uniform(0.2, 5.0, N)]
    ttl: list[Any] = [float(t) if i % 5 == 0 else None for i, t in enumerate(rng.uniform(5, 30, N))]
    local = Engine.open(None, clock=clock)
    cfg = {"dim": D, "beta": BETA, "half_life_s": 20.0}
    for name, k in (("one", 1), ("many", 3)):
        local.create_bank(name, BankConfig(**cfg, shards=k))
    body = {"name": "c", **cfg, "shards": 3, "replicas": 2}
    assert client.post("/v1/banks", json=body).status_code == 201
    half = N // 2
    for part in (slice(0, half), slice(half, N)):  # two batches, 7 s apart
        batch = _memories(ids[part], xi[part], s[part], ttl[part])
        _ok(client.post("/v1/banks/c/memories", json={"memories": batch}))
        for name in ("one", "many"):
            local.upsert(name, xi[part], ids=ids[part], payloads=[{"k": i} for i in ids[part]],
                         strengths=s[part], ttl_s=ttl[part])  # fmt: skip
        clock.advance(7.0)
    again = ["m1", "m3", "m22", "m37", "nope"]
    got = _ok(client.post("/v1/banks/c/memories/reinforce", json={"ids": again, "strength": 2.5}))
    assert got == {"reinforced": 4}
    for name in ("one", "many"):
        assert local.reinforce(name, again, strength=2.5) == 4
    clock.advance(9.0)  # m0 and others with a short ttl have expired (not reaped yet)
    now = clock.now()

    def check() -> None:
        want_n = local.count("one")
        assert _ok(client.post("/v1/banks/c/memories/count", json={}))["count"] == want_n
        assert client.get("/v1/banks/c").json()["count"] == want_n == local.count("many")
        q = (xi[[0, 1, 5, 22]] + 0.3 * rng.normal(size=(4, D))).astype(np.float32)
        for steps in (0, 1, 3):
            req = {"queries": q.tolist(), "steps": steps, "top_k": 4}
            r = _ok(client.post("/v1/banks/c/query", json=req))
            for name in ("one", "many"):
                _same_results(r["results"], local.query(name, q, steps=steps, top_k=4).results)
        e = _ok(client.post("/v1/banks/c/energy", json={
            "states": q.tolist(), "constants": True, "gradient": True}))  # fmt: skip
        w = local.energy("one", q, constants=True, gradient=True)
        np.testing.assert_allclose(e["energies"], w.energies, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(e["gradients"], w.gradients, atol=1e-5)
        flt = {"must": [{"key": "k", "match": {"any": ids[::2]}}]}
        e = _ok(client.post("/v1/banks/c/energy", json={
            "states": q.tolist(), "constants": True, "filter": flt}))  # fmt: skip
        w = local.energy("one", q, constants=True, filter=flt)
        np.testing.assert_allclose(e["energies"], w.energies, rtol=1e-5, atol=1e-5)
        alive = [r.id for r in local.scroll("one", 100, None)[0]]
        for mid in ("m0", "m1", "m2", "m22", "n0"):
            want = local.get_memory("one", mid).to_dict() if mid in alive else None
            r = client.get(f"/v1/banks/c/memories/{mid}")
            if want is None:
                assert r.status_code == 404, r.text
            else:
                assert _fields(r.json()) == _fields(want)
        page = _ok(client.get("/v1/banks/c/memories", params={"limit": 100}))["memories"]
        assert {m["id"]: _fields(m) for m in page} == {
            r.id: _fields(r.to_dict()) for r in local.scroll("one", 100, None)[0]
        }

    # The reference's own bookkeeping: m0 (ttl < 23 s) is gone; p ∝ s_μ(t) e^{β h}.
    assert "m0" not in {r.id for r in local.scroll("one", 100, None)[0]}
    check()
    live = [r.id for r in local.scroll("one", 100, None)[0]]
    rec = {mid: local.get_memory("one", mid).forgetting for mid in live}
    assert rec["m1"] is not None and rec["m1"]["strength"] == 2.5
    bias = np.log([rec[m]["strength_now"] for m in live])  # type: ignore[index]
    xs = xi[[ids.index(m) for m in live]].astype(np.float64)
    cue = xi[1:2] + 0.1
    r = _ok(client.post("/v1/banks/c/query", json={"queries": cue.tolist(), "steps": 0,
                                                   "top_k": 3}))  # fmt: skip
    p = ref.weights(xs, cue.astype(np.float64), BETA, bias)[0]
    for m in r["results"][0]["matches"]:
        assert abs(m["weight"] - p[live.index(m["id"])]) <= 1e-4
    # The router's reaper thread deletes what expired, on every replica, by the replicated
    # delete (it wakes at least once a second and finds the earliest expiry passed).
    engine = client.app.state.rt.engine  # type: ignore[attr-defined]
    bank = engine._banks["c"]
    deadline = time.monotonic() + 10.0
    while sum(len(bank.records(sh)[0][0]) for sh in range(3)) > len(live):
        assert time.monotonic() < deadline, "the router's reaper did not run"
        time.sleep(0.05)
    ends = [T0 + 7.0 * (i >= half) + ttl[i] for i in range(N) if ttl[i] is not None]
    assert engine.reap() == pytest.approx(min(e for e in ends if e > now))  # the next one
    local.reap()
    for sh in range(3):
        (ids0, v0, _), (ids1, v1, _) = bank.records(sh)
        assert dict(zip(ids0, v0.tolist(), strict=True)) == dict(
            zip(ids1, v1.tolist(), strict=True)
        )
        assert not set(ids0) - set(live)
    assert sum(len(bank.records(sh)[0][0]) for sh in range(3)) == len(live)
    assert now == clock.now()
    # A node is lost while strengths are written and reinforced; it comes back, is caught up
    # from a peer's snapshot (strengths, times, lifetimes with it), and answers the same.
    fake.kill_node("node1")
    clock.advance(4.0)
    new = (rng.normal(size=(6, D)) / math.sqrt(D)).astype(np.float32)
    nids = [f"n{i}" for i in range(6)]
    ns, nttl = [3.0, 0.5, 1.0, 2.0, 4.0, 0.3], [None, 40.0, None, None, 60.0, None]
    _ok(client.post("/v1/banks/c/memories", json={"memories": _memories(nids, new, ns, nttl)}))
    for name in ("one", "many"):
        local.upsert(name, new, ids=nids, payloads=[{"k": i} for i in nids], strengths=ns,
                     ttl_s=nttl)  # fmt: skip
    clock.advance(2.0)
    _ok(client.post("/v1/banks/c/memories/reinforce", json={"ids": ["n0", "m2"]}))
    for name in ("one", "many"):
        local.reinforce(name, ["n0", "m2"])
    fake.revive_node("node1")
    clock.advance(1.0)
    check()  # reads probe node1's replicas and catch them up
    d = client.get("/v1/cluster").json()
    assert all(r["state"] == "active" for sh in d["banks"][0]["shards"] for r in sh["replicas"])
    ctx = bank.ctx()
    for sh in range(3):
        pages = [
            fake.get(rep.handle.at.remote(ctx, "scroll", 100, None, True, None))[0]
            for rep in bank.replicas[sh]
        ]
        a, b = ({r.id: r.to_dict() for r in pg} for pg in pages)
        assert a == b and len(a) > 0  # the replicas, caught up: equal, priors included
    # A restarted router, and actors restarted from their stores (each with a reference time
    # of its own after the reload): the router realigns them and answers as one bank.
    client.__exit__(None, None, None)
    fake.restart_actors()
    client = cluster.start()
    clock.advance(1.0)
    check()
    local.close()


def test_a_default_lifetime_and_expires_at_on_a_cluster_bank(
    cluster: FakeRouter, clock: ManualClock
) -> None:
    client = cluster.start()
    local = Engine.open(None, clock=clock)
    local.create_bank("one", BankConfig(dim=3, beta=2.0, default_ttl_s=30.0))
    body = {"name": "d", "dim": 3, "beta": 2.0, "default_ttl_s": 30.0, "shards": 2, "replicas": 2}
    assert client.post("/v1/banks", json=body).status_code == 201
    xi = np.eye(3, dtype=np.float32)
    at = T0 + 100.0
    mems = [{"id": "a", "vector": xi[0].tolist()}, {"id": "b", "vector": xi[1].tolist(),
            "expires_at": at}, {"id": "c", "vector": xi[2].tolist(), "ttl_s": 10}]  # fmt: skip
    _ok(client.post("/v1/banks/d/memories", json={"memories": mems}))
    local.upsert(
        "one", xi, ids=["a", "b", "c"], expires_at=[None, at, None], ttl_s=[None, None, 10]
    )
    for mid in "abc":
        want = _fields(local.get_memory("one", mid).to_dict())
        assert _fields(client.get(f"/v1/banks/d/memories/{mid}").json()) == want
    bad = [{"id": "x", "vector": xi[0].tolist(), "expires_at": "2001-01-01T00:00:00Z"}]
    r = client.post("/v1/banks/d/memories", json={"memories": bad})
    assert r.status_code == 422, r.text  # in the past: refused, nothing stored
    for dt, alive in ((10.0, "ab"), (20.0, "b"), (70.0, "")):
        clock.advance(dt)
        page = _ok(client.get("/v1/banks/d/memories"))["memories"]
        assert (
            sorted(m["id"] for m in page)
            == list(alive)
            == sorted(r.id for r in local.scroll("one", 10, None)[0])
        )
        assert client.get("/v1/banks/d").json()["count"] == len(alive)
    engine = client.app.state.rt.engine  # type: ignore[attr-defined]
    assert engine.reap() == math.inf
    bank = engine._banks["d"]
    assert all(ids == [] for sh in range(2) for ids, _, _ in bank.records(sh))
    r = client.post("/v1/banks/d/query", json={"queries": [[1.0, 0.0, 0.0]]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "empty_bank", r.text
    local.close()
