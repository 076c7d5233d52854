"""Forgetting over HTTP (API.md "Forgetting"): the fields in and out, reinforce, PATCH,
OpenAPI, bad inputs (422 envelope, nothing stored). The real-time lifetime (ttl_s = 1 on a
real server) is tests/reliability/test_rel_forgetting.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests import reference as ref
from tests.api.api_support import assert_error

XI = np.eye(3, dtype=np.float32)


def _bank(client: TestClient, **cfg: Any) -> None:
    r = client.post("/v1/banks", json={"name": "f", "dim": 3, "beta": 2.0, **cfg})
    assert r.status_code == 201, r.text


def test_strengths_in_and_out_and_reinforce(client: TestClient) -> None:
    _bank(client, half_life_s=3600.0)
    assert client.get("/v1/banks/f").json()["half_life_s"] == 3600.0
    memories = [
        {"id": "a", "vector": XI[0].tolist(), "strength": 4.0},
        {"id": "b", "vector": XI[1].tolist(), "ttl_s": 3600},
        {"id": "c", "vector": XI[2].tolist(), "expires_at": "2999-01-01T00:00:00Z"},
    ]
    assert client.post("/v1/banks/f/memories", json={"memories": memories}).status_code == 200
    a = client.get("/v1/banks/f/memories/a").json()
    assert a["strength"] == 4.0 and 3.99 < a["strength_now"] <= 4.0
    assert a["stored_at"].endswith("Z") and a["reinforced_at"] is None and a["expires_at"] is None
    assert client.get("/v1/banks/f/memories/c").json()["expires_at"] == "2999-01-01T00:00:00.000Z"
    page = client.get("/v1/banks/f/memories").json()["memories"]
    assert {m["id"]: m["strength"] for m in page} == {"a": 4.0, "b": 1.0, "c": 1.0}
    cue = [[0.3, 0.3, 0.3]]
    r = client.post("/v1/banks/f/query", json={"queries": cue, "steps": 0, "top_k": 3})
    weights = {m["id"]: m["weight"] for m in r.json()["results"][0]["matches"]}
    want = ref.weights(XI, np.array(cue), 2.0, np.log([4.0, 1.0, 1.0]))[0]
    np.testing.assert_allclose([weights[k] for k in "abc"], want, rtol=1e-3)
    r = client.post("/v1/banks/f/memories/reinforce", json={"ids": ["b", "zz"], "strength": 2.0})
    assert r.status_code == 200 and r.json() == {"reinforced": 1}
    b = client.get("/v1/banks/f/memories/b").json()
    assert b["strength"] == 2.0 and b["reinforced_at"] is not None
    r = client.patch("/v1/banks/f", json={"half_life_s": None, "default_ttl_s": 60})
    assert r.status_code == 200 and r.json()["half_life_s"] is None
    assert r.json()["default_ttl_s"] == 60


@pytest.mark.parametrize(
    "extra",
    [
        {"strength": -1}, {"strength": 0}, {"strength": "x"}, {"ttl_s": 0}, {"ttl_s": -5},
        {"expires_at": "2001-01-01T00:00:00Z"}, {"expires_at": "soon"},
        {"ttl_s": 10, "expires_at": "2999-01-01T00:00:00Z"},
    ],
)  # fmt: skip
def test_bad_forgetting_fields_are_422_and_change_nothing(
    client: TestClient, extra: dict[str, Any]
) -> None:
    _bank(client)
    good = {"id": "ok", "vector": [1.0, 0.0, 0.0]}
    bad = {"id": "bad", "vector": [0.0, 1.0, 0.0], **extra}
    r = client.post("/v1/banks/f/memories", json={"memories": [good, bad]})
    assert_error(r, 422)
    assert client.post("/v1/banks/f/memories/count", json={}).json() == {"count": 0}


def test_bad_bank_and_reinforce_fields_are_422(client: TestClient) -> None:
    r = client.post("/v1/banks", json={"name": "g", "dim": 3, "half_life_s": 0})
    assert_error(r, 422)
    r = client.post("/v1/banks", json={"name": "g", "dim": 3, "default_ttl_s": -1})
    assert_error(r, 422)
    _bank(client)
    assert_error(client.patch("/v1/banks/f", json={"half_life_s": -2}), 422)
    r = client.post("/v1/banks/f/memories/reinforce", json={"ids": ["a"], "strength": 0})
    assert_error(r, 422)
    assert_error(client.post("/v1/banks/nope/memories/reinforce", json={"ids": []}), 404)


def test_openapi_describes_the_forgetting_fields(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"ttl_s", "expires_at", "strength"} <= set(schemas["MemoryIn"]["properties"])
    assert {"strength_now", "reinforced_at"} <= set(schemas["MemoryOut"]["properties"])
    assert {"default_ttl_s", "half_life_s"} <= set(schemas["BankPatch"]["properties"])
    assert "/v1/banks/{bank}/memories/reinforce" in doc["paths"]
