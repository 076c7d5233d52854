"""GET /v1/cluster outside cluster mode: one local node, one active replica per shard."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_cluster_lists_the_local_node_and_every_banks_shards(client: TestClient) -> None:
    assert client.get("/v1/cluster").json()["banks"] == []
    for name, shards in (("a", 1), ("b", 3)):
        body = {"name": name, "dim": 2, "shards": shards}
        assert client.post("/v1/banks", json=body).status_code == 201
    d = client.get("/v1/cluster").json()
    assert d["nodes"] == [{"node_id": "local", "address": d["nodes"][0]["address"], "alive": True}]
    banks = {b["name"]: b["shards"] for b in d["banks"]}
    assert [s["shard"] for s in banks["b"]] == [0, 1, 2] and len(banks["a"]) == 1
    for shards in banks.values():
        assert all(s["replicas"] == [{"node_id": "local", "state": "active"}] for s in shards)
    assert "/v1/cluster" in client.get("/openapi.json").json()["paths"]
