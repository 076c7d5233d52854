"""Filters over HTTP (API.md "Filters"): query, energy, scroll, count, delete, payload_index,
and their errors (422 invalid_filter with a path, 409 empty_selection)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from lam_engine.payload_index import INDEX_KINDS
from service.filter_schemas import PayloadIndex
from tests import reference as ref
from tests.api.api_support import assert_error

XI = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=np.float32)
TENANTS = ["a", "b", "a", "b"]
ACME: dict[str, Any] = {"must": [{"key": "tenant", "match": {"value": "a"}}]}


def _bank(client: TestClient, **cfg: Any) -> None:
    r = client.post("/v1/banks", json={"name": "f", "dim": 3, "beta": 3.0, **cfg})
    assert r.status_code == 201, r.text
    memories = [
        {"id": f"m{i}", "vector": XI[i].tolist(), "payload": {"tenant": t, "n": i}}
        for i, t in enumerate(TENANTS)
    ]
    assert client.post("/v1/banks/f/memories", json={"memories": memories}).status_code == 200


def test_query_and_energy_run_over_the_selection(client: TestClient) -> None:
    _bank(client, payload_index={"tenant": "keyword"})
    assert client.get("/v1/banks/f").json()["payload_index"] == {"tenant": "keyword"}
    cue = [[0.7, 0.7, 0.1]]
    r = client.post("/v1/banks/f/query", json={"queries": cue, "steps": 1, "filter": ACME})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert {m["id"] for m in res["matches"]} <= {"m0", "m2"}
    state, _, _ = ref.retrieve(XI[[0, 2]], np.array(cue), 3.0, steps=1, tol=0.0)
    np.testing.assert_allclose(res["state"], state[0], atol=1e-5)
    r = client.post("/v1/banks/f/energy", json={"states": cue, "constants": True, "filter": ACME})
    assert r.status_code == 200, r.text
    want = ref.energy(XI[[0, 2]], np.array(cue), 3.0, constants=True)
    np.testing.assert_allclose(r.json()["energies"], want, rtol=1e-5)


def test_scroll_count_delete(client: TestClient) -> None:
    _bank(client)
    r = client.post("/v1/banks/f/memories/count", json={"filter": ACME})
    assert r.json() == {"count": 2}
    assert client.post("/v1/banks/f/memories/count", json={}).json() == {"count": 4}
    r = client.post("/v1/banks/f/memories/scroll", json={"filter": ACME, "limit": 1})
    page = r.json()
    assert [m["id"] for m in page["memories"]] == ["m0"] and page["next_cursor"]
    assert "vector" not in page["memories"][0] or page["memories"][0]["vector"] is None
    r = client.post(
        "/v1/banks/f/memories/scroll",
        json={"filter": ACME, "cursor": page["next_cursor"], "with_vectors": True},
    )
    assert [m["id"] for m in r.json()["memories"]] == ["m2"] and r.json()["next_cursor"] is None
    none = {"must": [{"key": "tenant", "match": {"value": "zzz"}}]}
    assert client.post("/v1/banks/f/memories/scroll", json={"filter": none}).json() == {
        "memories": [],
        "next_cursor": None,
    }
    assert client.post("/v1/banks/f/memories/delete", json={"filter": none}).json() == {
        "deleted": 0
    }
    assert client.post("/v1/banks/f/memories/delete", json={"filter": ACME}).json() == {
        "deleted": 2
    }
    assert client.get("/v1/banks/f").json()["count"] == 2
    assert client.post("/v1/banks/f/memories/delete", json={"ids": ["m1"]}).json() == {"deleted": 1}


def test_errors(client: TestClient) -> None:
    _bank(client)
    bad = {"must": [{"key": "n", "range": {"gte": "x"}}]}
    for path, extra in (
        ("query", {"queries": [[1, 0, 0]]}),
        ("energy", {"states": [[1, 0, 0]]}),
        ("memories/count", {}),
        ("memories/scroll", {}),
        ("memories/delete", {}),
    ):
        r = client.post(f"/v1/banks/f/{path}", json={**extra, "filter": bad})
        err = assert_error(r, 422, "invalid_filter")
        assert err["details"]["path"] == "filter.must[0].range.gte", path
    none = {"must": [{"has_id": []}]}
    r = client.post("/v1/banks/f/query", json={"queries": [[1, 0, 0]], "filter": none})
    assert_error(r, 409, "empty_selection")
    r = client.post("/v1/banks/f/energy", json={"states": [[1, 0, 0]], "filter": none})
    assert_error(r, 409, "empty_selection")
    for body in ({}, {"ids": ["m0"], "filter": ACME}, {"filter": None}):
        assert_error(client.post("/v1/banks/f/memories/delete", json=body), 422)
    assert client.get("/v1/banks/f").json()["count"] == 4  # nothing changed
    r = client.post("/v1/banks", json={"name": "g", "dim": 2, "payload_index": {"t": "nope"}})
    assert_error(r, 422)
    r = client.patch("/v1/banks/f", json={"payload_index": {"tenant": "keyword"}})
    assert r.status_code == 200 and r.json()["payload_index"] == {"tenant": "keyword"}
    assert client.post("/v1/banks/f/memories/count", json={"filter": ACME}).json()["count"] == 2


def test_schema_kinds_are_the_engines() -> None:
    kinds = PayloadIndex.__args__[1].__args__  # type: ignore[attr-defined]
    assert tuple(kinds) == tuple(INDEX_KINDS)
