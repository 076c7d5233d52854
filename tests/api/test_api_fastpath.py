"""POST /v1/banks/{bank}/query's fast path (service/fastpath.py) answers as the full app.

Every request below is sent twice, once with the fast path and once with it switched off
(all requests through FastAPI's router and dependencies), and the two answers must be the
same: status, body, content type, Retry-After / WWW-Authenticate, and the metrics labels.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.fastpath import QueryFastPath
from tests.api.api_support import ClientFactory, make_bank

KEYS = "w-key:write,r-key:read"
W = {"Authorization": "Bearer w-key"}


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a.astype(np.float32))
    return buf.getvalue()


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("m", {"json": {"queries": [[1, 0, 0, 0]]}}),
    ("m", {"json": {"queries": [[1, 0, 0, 0], [0, 1, 0.1, 0]], "steps": 0, "top_k": 2}}),
    ("m", {"json": {"queries": [[1, 0, 0, 0]], "mask": [[True, True, False, False]]}}),
    ("m", {"json": {"queries": [[1, 0, 0, 0]], "filter": {"i": {"$gte": 2}}, "steps": 0}}),
    (
        "m",
        {
            "content": _npy(np.eye(4)[:2]),
            "headers": {"content-type": "application/x-npy"},
            "params": {"steps": "0", "top_k": "3"},
        },
    ),
    ("m", {"json": {"queries": [[1, 0, 0]]}}),  # wrong dimension: 422
    ("m", {"json": {"queries": [[1, 0, 0, "x"]]}}),  # not a number: 422
    ("m", {"json": {"queries": [[1, 0, 0, 0]], "steps": -1}}),  # out of range: 422
    ("m", {"json": {"texts": ["hello"]}}),  # not a text bank
    ("m", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("m", {"content": b"", "headers": {"content-type": "application/json"}}),
    ("m", {"content": b"x", "headers": {"content-type": "text/plain"}}),  # 415
    ("m", {"json": {"queries": [[1, 0, 0, 0]]}, "params": {"top_k": "zero"}}),  # 422
    ("m", {"json": {"queries": [[1, 0, 0, 0]] * 300}}),  # over the batch limit: 413
    ("m", {"json": {"queries": [[0.0] * 4] * 10_000}}),  # over the body limit: 413
    ("nope", {"json": {"queries": [[1, 0, 0, 0]]}}),  # unknown bank: 404
    ("Bad Name", {"json": {"queries": [[1, 0, 0, 0]]}}),  # cannot exist: 404 as well
    ("empty", {"json": {"queries": [[1, 0, 0, 0]]}}),  # no memories: 409
]


def _answers(client: TestClient, headers: dict[str, str]) -> list[tuple[Any, ...]]:
    out = []
    for bank, kw in REQUESTS:
        kw = {**kw, "headers": {**headers, **kw.get("headers", {})}}
        r = client.post(f"/v1/banks/{bank}/query", **kw)
        h = r.headers
        out.append((bank, r.status_code, h.get("content-type"), h.get("retry-after"),
                    h.get("www-authenticate"), r.json()))  # fmt: skip
    return out


def _requests_metrics(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics", headers=W).text
    out = {}
    for line in text.splitlines():
        if line.startswith(("lam_requests_total{", "lam_errors_total{")):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """What the requests counted (a router's start may count a 503 of /readyz or not)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


@pytest.mark.parametrize("keys", [None, KEYS])
def test_fast_path_answers_every_request_as_the_full_app(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, keys: str | None
) -> None:
    taken: list[str] = []
    bank_of = QueryFastPath.bank_of

    def spy(self: QueryFastPath, scope: Any) -> str | None:
        bank = bank_of(self, scope)
        if bank is not None:
            taken.append(bank)
        return bank

    runs = []
    for fast in (True, False):
        monkeypatch.setattr(QueryFastPath, "bank_of", spy if fast else lambda self, scope: None)
        client = make_client(api_keys=keys, max_body_bytes=100_000, max_query_batch=256)
        auth = {"Authorization": "Bearer w-key"} if keys else {}
        client.headers.update(auth)
        make_bank(client)
        assert client.post("/v1/banks", json={"name": "empty", "dim": 4}).status_code == 201
        client.headers.clear()
        before = _requests_metrics(client)
        answers = _answers(client, auth)
        if keys:  # a read key passes; a missing, wrong or malformed one does not
            answers += _answers(client, {"Authorization": "Bearer r-key"})
            answers += _answers(client, {})
            answers += _answers(client, {"Authorization": "Bearer nope"})
            answers += _answers(client, {"Authorization": "Basic r-key"})
        runs.append((answers, _delta(_requests_metrics(client), before)))
    (fast_answers, fast_metrics), (slow_answers, slow_metrics) = runs
    assert [a[:2] for a in fast_answers] == [a[:2] for a in slow_answers]
    assert fast_answers == slow_answers
    assert fast_metrics == slow_metrics
    assert taken and set(taken) <= {"m", "nope", "empty"}  # "Bad Name" went the long way
    statuses = {a[1] for a in fast_answers}
    assert {200, 404, 409, 413, 415, 422} <= statuses
    if keys:
        assert 401 in statuses


def test_fast_path_waits_for_readiness_like_the_app(make_client: ClientFactory) -> None:
    client = make_client()
    make_bank(client)
    rt = client.app.state.rt  # type: ignore[attr-defined]
    rt.ready = False
    try:
        r = client.post("/v1/banks/m/query", json={"queries": [[1, 0, 0, 0]]})
    finally:
        rt.ready = True
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
    assert r.headers["retry-after"] == "1"
    assert client.post("/v1/banks/m/query", json={"queries": [[1, 0, 0, 0]]}).status_code == 200
