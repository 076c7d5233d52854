"""Sharded banks over HTTP (API.md "Sharded banks", outside cluster mode): in-process shards."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.api.api_support import ClientFactory, assert_error

RNG = np.random.default_rng(11)
XI = (RNG.normal(size=(40, 4)) / 2).astype(np.float32)


def _store(client: TestClient, name: str, shards: int) -> None:
    r = client.post("/v1/banks", json={"name": name, "dim": 4, "beta": 3.0, "shards": shards})
    assert r.status_code == 201, r.text
    mems = [{"id": f"m{i}", "vector": XI[i].tolist(), "payload": {"i": i}} for i in range(40)]
    assert client.post(f"/v1/banks/{name}/memories", json={"memories": mems}).status_code == 200


def test_create_sharded_bank_describes_shards_and_refuses_replicas(client: TestClient) -> None:
    _store(client, "s", 4)
    d = client.get("/v1/banks/s").json()
    assert (d["shards"], d["replicas"], d["count"]) == (4, 1, 40)
    assert client.post("/v1/banks", json={"name": "p", "dim": 4}).json()["shards"] == 1
    err = assert_error(
        client.post("/v1/banks", json={"name": "r", "dim": 4, "replicas": 2}),
        422,
        "cluster_required",
    )
    assert err["details"] == {"replicas": 2}
    for bad in ({"shards": 0}, {"shards": 65}, {"replicas": 6}, {"shards": 1.5}):
        assert_error(client.post("/v1/banks", json={"name": "r", "dim": 4, **bad}), 422)
    assert client.get("/v1/banks/r").status_code == 404
    # Same config again (shards included) is idempotent; another shard count is a conflict.
    assert (
        client.post("/v1/banks", json={"name": "s", "dim": 4, "beta": 3.0, "shards": 4}).status_code
        == 200
    )
    assert_error(client.post("/v1/banks", json={"name": "s", "dim": 4, "beta": 3.0}), 409)


def test_sharded_answers_equal_one_shard_over_http(client: TestClient) -> None:
    _store(client, "one", 1)
    _store(client, "many", 3)
    body = {"queries": XI[:3].tolist(), "steps": 5, "top_k": 4}
    a = client.post("/v1/banks/one/query", json=body).json()
    b = client.post("/v1/banks/many/query", json=body).json()
    for ra, rb in zip(a["results"], b["results"], strict=True):
        np.testing.assert_allclose(rb["state"], ra["state"], atol=1e-5)
        assert abs(rb["energy"] - ra["energy"]) < 1e-4
        assert [m["id"] for m in rb["matches"]] == [m["id"] for m in ra["matches"]]
    pa = client.get("/v1/banks/one/memories?limit=100").json()
    pb = client.get("/v1/banks/many/memories?limit=100").json()
    assert [m["id"] for m in pb["memories"]] == [m["id"] for m in pa["memories"]]
    assert client.get("/v1/banks/many/memories/m5").json()["payload"] == {"i": 5}


def test_snapshot_of_a_sharded_bank_reimports_with_another_shard_count(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    _store(client, "many", 3)
    snap = client.get("/v1/banks/many/snapshot").content
    headers = {"content-type": "application/zip"}
    r = client.post("/v1/banks/two/snapshot?shards=2", content=snap, headers=headers)
    assert r.status_code == 201 and r.json()["shards"] == 2 and r.json()["count"] == 40
    r = client.post("/v1/banks/same/snapshot", content=snap, headers=headers)
    assert r.json()["shards"] == 3
    assert_error(
        client.post("/v1/banks/bad/snapshot?shards=99", content=snap, headers=headers), 422
    )
    assert "shards" in str(client.get("/openapi.json").json()["components"]["schemas"]["BankOut"])
