"""Novelty-gated store over HTTP: `if_novel` on POST /memories (API.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests import reference as ref
from tests.api.api_support import assert_error

BETA = 8.0
EYE = np.eye(4).tolist()


def make(client: TestClient, name: str = "nv") -> str:
    r = client.post("/v1/banks", json={"name": name, "dim": 4, "beta": BETA, "normalize": True})
    assert r.status_code == 201, r.text
    memories = [{"id": f"m{i}", "vector": EYE[i]} for i in range(2)]
    assert client.post(f"/v1/banks/{name}/memories", json={"memories": memories}).status_code == 200
    return name


def gated(vectors: list[list[float]], tau: Any, ids: list[str] | None = None) -> dict[str, Any]:
    memories = [{"vector": v, **({"id": ids[i]} if ids else {})} for i, v in enumerate(vectors)]
    return {"memories": memories, "if_novel": {"energy_above": tau}}


def test_gated_store_skips_near_duplicates(client: TestClient) -> None:
    bank = make(client)
    x = [[1, 0.02, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0.03], [0, 0, 0, 1]]
    r = client.post(f"/v1/banks/{bank}/memories", json=gated(x, 0, ["d0", "n2", "d2", "n3"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ids"] == ["n2", "n3"] and body["count"] == 4
    assert [(s["index"], s["id"], s["nearest"]) for s in body["skipped"]] == [
        (0, "d0", "m0"),
        (2, "d2", "n2"),
    ]
    # The first one was judged against the bank alone: its energy is /energy's plain E.
    state = ref.normalize(np.array(x[0]))[0].tolist()
    e = client.post(f"/v1/banks/{bank}/energy", json={"states": [state]}).json()["energies"][0]
    # /energy now sees n2 and n3 too, whose weight at d0 is ~e^{-8}: equal to ~1e-4.
    assert body["skipped"][0]["energy"] == pytest.approx(e, abs=1e-4)
    ids = [m["id"] for m in client.get(f"/v1/banks/{bank}/memories").json()["memories"]]
    assert ids == ["m0", "m1", "n2", "n3"]


def test_without_if_novel_the_answer_is_unchanged(client: TestClient) -> None:
    bank = make(client)
    r = client.post(f"/v1/banks/{bank}/memories", json={"memories": [{"vector": EYE[0]}]})
    assert set(r.json()) == {"ids", "count"}
    body = {"memories": [{"vector": EYE[1]}], "if_novel": None}  # null: not gated
    assert set(client.post(f"/v1/banks/{bank}/memories", json=body).json()) == {"ids", "count"}
    # Gated and nothing skipped: the key is there, empty.
    r = client.post(f"/v1/banks/{bank}/memories", json=gated([EYE[3]], 0.0))
    assert r.json()["skipped"] == [] and len(r.json()["ids"]) == 1


def test_all_skipped_changes_nothing(client: TestClient) -> None:
    bank = make(client)
    before = client.get(f"/v1/banks/{bank}").json()
    r = client.post(f"/v1/banks/{bank}/memories", json=gated([[1, 0.01, 0, 0], EYE[1]], -0.1))
    assert r.status_code == 200 and r.json()["ids"] == [] and r.json()["count"] == 2
    assert [s["nearest"] for s in r.json()["skipped"]] == ["m0", "m1"]
    assert client.get(f"/v1/banks/{bank}").json() == before


def test_empty_bank_never_answers_infinity(client: TestClient) -> None:
    client.post("/v1/banks", json={"name": "empty", "dim": 2, "beta": BETA})
    r = client.post("/v1/banks/empty/memories", json=gated([[1, 0], [1, 0.01], [0, 1]], 1e300))
    assert r.status_code == 200
    assert "Infinity" not in r.text and "NaN" not in r.text and "null" not in r.text
    assert len(r.json()["ids"]) == 1 and len(r.json()["skipped"]) == 2  # E(first) = +inf


@pytest.mark.parametrize(
    ("if_novel", "code"),
    [
        (0.5, "validation_error"),
        ([0.5], "validation_error"),
        ({}, "validation_error"),
        ({"energy_above": "0.5"}, "validation_error"),
        ({"energy_above": True}, "validation_error"),
        ({"energy_above": None}, "validation_error"),
        ({"energy_above": 0.5, "other": 1}, "validation_error"),
        ({"energy_below": 0.5}, "validation_error"),
    ],
)
def test_bad_if_novel_is_422_and_changes_nothing(
    client: TestClient, if_novel: Any, code: str
) -> None:
    bank = make(client)
    body = {"memories": [{"vector": EYE[2]}], "if_novel": if_novel}
    err = assert_error(client.post(f"/v1/banks/{bank}/memories", json=body), 422, code)
    assert err["details"][0]["loc"][:2] == ["body", "if_novel"]
    assert client.get(f"/v1/banks/{bank}").json()["count"] == 2


@pytest.mark.parametrize("raw", [b"1e400", b"-Infinity", b"NaN"])
def test_non_finite_tau_is_422(client: TestClient, raw: bytes) -> None:
    bank = make(client)
    body = b'{"memories": [{"vector": [0, 0, 1, 0]}], "if_novel": {"energy_above": ' + raw + b"}}"
    r = client.post(
        f"/v1/banks/{bank}/memories", content=body, headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "non_finite")
    assert client.get(f"/v1/banks/{bank}").json()["count"] == 2


def test_openapi_documents_if_novel_and_skipped(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    gate = schemas["StoreRequest"]["properties"]["if_novel"]["anyOf"][0]["$ref"]
    assert gate.endswith("/NoveltyGate")
    assert schemas["NoveltyGate"]["required"] == ["energy_above"]
    assert schemas["NoveltyGate"]["additionalProperties"] is False
    skipped = schemas["StoreOut"]["properties"]["skipped"]
    assert skipped["type"] == "array" and "skipped" not in schemas["StoreOut"]["required"]
    assert set(schemas["SkippedOut"]["required"]) == {"index", "id", "energy", "nearest"}
