"""Banks: create (201/200/409), list, get, patch, delete, limits, snapshots."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from fastapi.testclient import TestClient

from tests.api.api_support import BETA, IDS, XI, ClientFactory, assert_error, make_bank


def test_create_returns_201_with_defaults_of_api_md(client: TestClient) -> None:
    r = client.post("/v1/banks", json={"name": "faces", "dim": 3})
    assert r.status_code == 201
    d = r.json()
    assert (d["name"], d["dim"], d["model"], d["beta"]) == ("faces", 3, "B", 1.0)
    assert (d["normalize"], d["dtype"], d["prefilter"]["kind"]) == (False, "float32", "none")
    assert d["count"] == 0 and d["device"] == "cpu" and d["created_at"]
    assert "memory_bytes" in d and "index" in d


def test_create_same_config_is_idempotent_200_other_config_409(client: TestClient) -> None:
    body = {"name": "x", "dim": 3, "beta": 2.0}
    assert client.post("/v1/banks", json=body).status_code == 201
    again = client.post("/v1/banks", json=body)
    assert again.status_code == 200 and again.json()["beta"] == 2.0
    assert_error(client.post("/v1/banks", json={**body, "beta": 3.0}), 409, "bank_exists")
    assert client.get("/v1/banks/x").json()["beta"] == 2.0


def test_create_rejects_bad_values_with_422(client: TestClient) -> None:
    for body in (
        {"name": "Bad Name", "dim": 3},
        {"name": "x", "dim": 0},
        {"name": "x", "dim": 3, "beta": 0},
        {"name": "x", "dim": 3, "beta": -1},
        {"name": "x", "dim": 3, "model": "D"},
        {"name": "x", "dim": 3, "dtype": "float64"},
        {"name": "x", "dim": 3, "prefilter": {"kind": "annoy"}},
        {"name": "x", "dim": 3, "colour": "red"},
        {"dim": 3},
    ):
        assert_error(client.post("/v1/banks", json=body), 422)
    assert client.get("/v1/banks").json() == {"banks": []}


def test_limits_max_dim_and_max_banks(make_client: ClientFactory) -> None:
    c = make_client(max_dim=8, max_banks=2)
    err = assert_error(c.post("/v1/banks", json={"name": "big", "dim": 9}), 422)
    assert "8" in err["message"]
    assert c.post("/v1/banks", json={"name": "b1", "dim": 8}).status_code == 201
    assert c.post("/v1/banks", json={"name": "b2", "dim": 8}).status_code == 201
    err = assert_error(c.post("/v1/banks", json={"name": "b3", "dim": 8}), 409, "too_many_banks")
    assert err["details"] == {"max_banks": 2}
    # An existing bank is still idempotent at the limit.
    assert c.post("/v1/banks", json={"name": "b2", "dim": 8}).status_code == 200


def test_list_get_delete(client: TestClient, bank: str) -> None:
    names = [b["name"] for b in client.get("/v1/banks").json()["banks"]]
    assert names == [bank]
    assert client.get(f"/v1/banks/{bank}").json()["count"] == len(IDS)
    r = client.delete(f"/v1/banks/{bank}")
    assert r.status_code == 204 and r.content == b""
    assert_error(client.get(f"/v1/banks/{bank}"), 404, "bank_not_found")
    assert_error(client.delete(f"/v1/banks/{bank}"), 404, "bank_not_found")


def test_patch_changes_beta_and_merges_prefilter(client: TestClient, bank: str) -> None:
    r = client.patch(f"/v1/banks/{bank}", json={"beta": 5.0})
    assert r.status_code == 200 and r.json()["beta"] == 5.0
    r = client.patch(f"/v1/banks/{bank}", json={"prefilter": {"kind": "flat", "k": 2}})
    assert r.status_code == 200
    assert r.json()["prefilter"]["kind"] == "flat" and r.json()["prefilter"]["k"] == 2
    r = client.patch(f"/v1/banks/{bank}", json={"prefilter": {"k": 3}})
    assert r.json()["prefilter"] == {**r.json()["prefilter"], "kind": "flat", "k": 3}
    assert_error(client.patch(f"/v1/banks/{bank}", json={"beta": 0}), 422)
    assert_error(client.patch(f"/v1/banks/{bank}", json={"dim": 7}), 422)
    assert_error(client.patch("/v1/banks/nope", json={"beta": 1.0}), 404, "bank_not_found")
    assert client.get(f"/v1/banks/{bank}").json()["beta"] == 5.0


def test_snapshot_round_trip_is_exact(client: TestClient, bank: str) -> None:
    r = client.get(f"/v1/banks/{bank}/snapshot")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert f'filename="{bank}.lamsnap"' in r.headers["content-disposition"]
    assert int(r.headers["content-length"]) == len(r.content)
    assert zipfile.is_zipfile(io.BytesIO(r.content))
    up = client.post(
        "/v1/banks/copy/snapshot", content=r.content, headers={"content-type": "application/zip"}
    )
    assert up.status_code == 201, up.text
    assert up.json()["beta"] == BETA and up.json()["count"] == len(IDS)
    for i, row in zip(IDS, XI, strict=True):
        m = client.get(f"/v1/banks/copy/memories/{i}").json()
        assert np.array_equal(np.asarray(m["vector"], np.float32), row)
        assert m["payload"] == {"i": IDS.index(i)}
    # Exists → 409 unless replace=true.
    headers = {"content-type": "application/zip"}
    assert_error(
        client.post("/v1/banks/copy/snapshot", content=r.content, headers=headers),
        409,
        "bank_exists",
    )
    client.post("/v1/banks/copy/memories/delete", json={"ids": ["a"]})
    r2 = client.post("/v1/banks/copy/snapshot?replace=true", content=r.content, headers=headers)
    assert r2.status_code == 201 and r2.json()["count"] == len(IDS)


def test_snapshot_errors(client: TestClient, bank: str) -> None:
    assert_error(client.get("/v1/banks/nope/snapshot"), 404, "bank_not_found")
    headers = {"content-type": "application/zip"}
    r = client.post("/v1/banks/new/snapshot", content=b"not a zip", headers=headers)
    assert_error(r, 422)
    r = client.post("/v1/banks/new/snapshot", content=b"{}", headers={"content-type": "text/csv"})
    assert_error(r, 415, "unsupported_media_type")
    assert_error(client.get("/v1/banks/new"), 404)


def test_snapshot_upload_respects_max_banks(make_client: ClientFactory) -> None:
    c = make_client(max_banks=1)
    make_bank(c, "one")
    snap = c.get("/v1/banks/one/snapshot").content
    r = c.post("/v1/banks/two/snapshot", content=snap, headers={"content-type": "application/zip"})
    assert_error(r, 409, "too_many_banks")
