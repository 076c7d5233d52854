"""Memories: store (JSON and .npy), content addresses, get, delete, scroll, bad input."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.api_support import IDS, XI, ClientFactory, assert_error, make_bank


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def sha(vector: list[float]) -> str:
    return hashlib.sha256(np.asarray(vector, dtype="<f4").tobytes()).hexdigest()


def test_store_returns_ids_and_count(client: TestClient) -> None:
    client.post("/v1/banks", json={"name": "s", "dim": 2})
    r = client.post(
        "/v1/banks/s/memories",
        json={"memories": [{"id": "x", "vector": [1, 2]}, {"vector": [0.5, -1.5]}]},
    )
    assert r.status_code == 200
    assert r.json() == {"ids": ["x", sha([0.5, -1.5])], "count": 2}
    # The same vector again is stored once; an existing id is replaced.
    r = client.post(
        "/v1/banks/s/memories",
        json={
            "memories": [
                {"vector": [0.5, -1.5]},
                {"id": "x", "vector": [3, 4], "payload": {"k": 1}},
            ]
        },
    )
    assert r.json()["count"] == 2
    got = client.get("/v1/banks/s/memories/x").json()
    assert {k: got.pop(k) for k in ("id", "vector", "payload")} == {
        "id": "x", "vector": [3.0, 4.0], "payload": {"k": 1},
    }  # fmt: skip
    # API.md "Forgetting": the rest is the memory's strength and times (none given here)
    assert set(got) == {"strength", "strength_now", "stored_at", "reinforced_at", "expires_at"}
    assert got["strength"] == got["strength_now"] == 1.0 and got["expires_at"] is None


def test_content_address_after_normalization(client: TestClient) -> None:
    client.post("/v1/banks", json={"name": "n", "dim": 2, "normalize": True})
    r = client.post("/v1/banks/n/memories", json={"memories": [{"vector": [3, 4]}]})
    assert r.json()["ids"] == [sha([0.6, 0.8])]


def test_store_npy_body(client: TestClient) -> None:
    client.post("/v1/banks", json={"name": "s", "dim": 4})
    r = client.post(
        "/v1/banks/s/memories", content=npy(XI), headers={"content-type": "application/x-npy"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"ids": [sha(row) for row in XI.tolist()], "count": len(XI)}
    stored = client.get(f"/v1/banks/s/memories/{r.json()['ids'][3]}").json()
    assert stored["vector"] == XI[3].tolist() and stored["payload"] is None
    bad = client.post(
        "/v1/banks/s/memories",
        content=b"\x93NUMPY garbage",
        headers={"content-type": "application/x-npy"},
    )
    assert_error(bad, 400, "malformed_npy")


def test_get_delete_and_bulk_delete(client: TestClient, bank: str) -> None:
    m = client.get(f"/v1/banks/{bank}/memories/b").json()
    assert {k: m[k] for k in ("id", "vector", "payload")} == {
        "id": "b", "vector": XI[1].tolist(), "payload": {"i": 1},
    }  # fmt: skip
    assert_error(client.get(f"/v1/banks/{bank}/memories/zz"), 404, "memory_not_found")
    assert_error(client.get("/v1/banks/nope/memories/a"), 404, "bank_not_found")
    r = client.delete(f"/v1/banks/{bank}/memories/a")
    assert r.status_code == 204 and r.content == b""
    assert_error(client.delete(f"/v1/banks/{bank}/memories/a"), 404, "memory_not_found")
    r = client.post(f"/v1/banks/{bank}/memories/delete", json={"ids": ["a", "b", "c", "zz"]})
    assert r.json() == {"deleted": 2}
    assert client.get(f"/v1/banks/{bank}").json()["count"] == 1


def test_scroll_pages_through_everything_in_order(client: TestClient, bank: str) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/v1/banks/{bank}/memories", params=params).json()
        assert len(page["memories"]) <= 3
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == IDS
    first = client.get(f"/v1/banks/{bank}/memories").json()
    assert len(first["memories"]) == len(IDS) and first["next_cursor"] is None
    for limit in (0, 1001, -1):
        assert_error(client.get(f"/v1/banks/{bank}/memories", params={"limit": limit}), 422)
    assert_error(client.get(f"/v1/banks/{bank}/memories", params={"cursor": "xyz"}), 422)


def test_scroll_pages_show_strength_and_times(client: TestClient, bank: str) -> None:
    """API.md "Forgetting": get and scroll show a memory's strength and times, alike."""
    fields = {"strength", "strength_now", "stored_at", "reinforced_at", "expires_at"}
    page = client.get(f"/v1/banks/{bank}/memories", params={"limit": 100}).json()["memories"]
    assert sorted(m["id"] for m in page) == sorted(IDS)
    for m in page:
        assert fields <= set(m) and m["strength"] == m["strength_now"] == 1.0
        assert m["stored_at"].endswith("Z") and m["expires_at"] is None
        got = client.get(f"/v1/banks/{bank}/memories/{m['id']}").json()
        assert {k: got[k] for k in fields} == {k: m[k] for k in fields}


def _state(client: TestClient, bank: str) -> tuple[int, list[float]]:
    count = client.get(f"/v1/banks/{bank}").json()["count"]
    return count, client.get(f"/v1/banks/{bank}/memories/a").json()["vector"]


GOOD = {"id": "new", "vector": [0.0, 0.0, 0.0, 1.0]}
BAD_WRITES = [
    (422, "dimension_mismatch", {"memories": [GOOD, {"id": "a", "vector": [1.0, 2.0]}]}),
    (422, "dimension_mismatch", {"memories": [{"id": "a", "vector": [1.0, 2.0]}]}),
    (422, "duplicate_id", {"memories": [{**GOOD, "id": "a"}, {**GOOD, "id": "a"}]}),
    (422, "empty_batch", {"memories": []}),
    (422, None, {"memories": [GOOD, {"id": "a", "vector": [1, "x", 0, 0]}]}),
    (422, None, {"memories": [GOOD, {"id": "a", "vector": [True, False, True, False]}]}),
    (422, None, {"memories": [GOOD, {"id": "a", "vector": [1, 2, 3, 4], "payload": [1]}]}),
    (422, None, {"memories": [GOOD, {"id": 7, "vector": [1, 2, 3, 4]}]}),
    (422, None, {"memories": [GOOD, {"id": "a", "vector": [1, 2, 3, 4], "extra": 1}]}),
    (422, None, {"memories": [GOOD, {"id": "a"}]}),
    (422, None, {"memories": {"id": "a"}}),
    (422, None, {"vectors": [[1, 2, 3, 4]]}),
    (422, None, [GOOD]),
    (422, "non_finite", {"memories": [GOOD, {"id": "a", "vector": [1e39, 0, 0, 0]}]}),
]


@pytest.mark.parametrize(("status", "code", "body"), BAD_WRITES)
def test_bad_write_is_rejected_and_changes_nothing(
    client: TestClient, bank: str, status: int, code: str | None, body: Any
) -> None:
    before = _state(client, bank)
    assert_error(client.post(f"/v1/banks/{bank}/memories", json=body), status, code)
    assert _state(client, bank) == before
    assert client.get(f"/v1/banks/{bank}/memories/new").status_code == 404


@pytest.mark.parametrize(
    "raw",
    [b'{"memories": [{"id": "a", "vector": [NaN, 0, 0, 0]}]}',
     b'{"memories": [{"id": "a", "vector": [Infinity, 0, 0, 0]}]}',
     b'{"memories": [{"id": "a", "vector": [-Infinity, 0, 0, 0]}]}',
     b'{"memories": [{"id": "a", "vector": [1e999, 0, 0, 0]}]}'],
)  # fmt: skip
def test_nan_and_infinity_tokens_are_422(client: TestClient, bank: str, raw: bytes) -> None:
    before = _state(client, bank)
    r = client.post(
        f"/v1/banks/{bank}/memories", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "non_finite")
    assert _state(client, bank) == before


def test_malformed_json_400_and_content_type_415(client: TestClient, bank: str) -> None:
    before = _state(client, bank)
    for raw in (b'{"memories": [', b"", b"\xff\xfe", b"{'single': 1}"):
        r = client.post(
            f"/v1/banks/{bank}/memories", content=raw, headers={"content-type": "application/json"}
        )
        assert_error(r, 400, "malformed_json")
    r = client.post(
        f"/v1/banks/{bank}/memories", content=b"a=1", headers={"content-type": "text/plain"}
    )
    assert_error(r, 415, "unsupported_media_type")
    assert _state(client, bank) == before


def test_unknown_bank_is_404(client: TestClient) -> None:
    r = client.post("/v1/banks/nope/memories", json={"memories": [GOOD]})
    assert_error(r, 404, "bank_not_found")


def test_batch_and_body_limits_are_413(make_client: ClientFactory) -> None:
    c = make_client(max_store_batch=4, max_body_bytes=2000)
    make_bank(c, "m")
    before = _state(c, "m")
    five = {"memories": [{"vector": [float(i), 1, 0, 0]} for i in range(5)]}
    err = assert_error(c.post("/v1/banks/m/memories", json=five), 413, "batch_too_large")
    assert "4" in err["message"]
    r = c.post(
        "/v1/banks/m/memories",
        content=npy(np.ones((5, 4), np.float32)),
        headers={"content-type": "application/x-npy"},
    )
    assert_error(r, 413, "batch_too_large")
    big = {"memories": [{"id": "a", "vector": [1, 2, 3, 4], "payload": {"s": "x" * 3000}}]}
    err = assert_error(c.post("/v1/banks/m/memories", json=big), 413, "body_too_large")
    assert "2000" in err["message"]

    def chunks() -> Any:  # no Content-Length: the limit holds while streaming
        yield b'{"memories": [{"id": "a", "vector": [1, 2, 3, 4], "payload": {"s": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}}]}'

    r = c.post(
        "/v1/banks/m/memories", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(r, 413, "body_too_large")
    assert _state(c, "m") == before
