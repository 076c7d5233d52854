"""A lifetime in real time (API.md "Forgetting"): ttl_s = 1 over HTTP on a real server
(uvicorn, the system clock), visible before and gone after for get, the bank count and
query. The deterministic checks of every read use a ManualClock: tests/unit/test_forgetting.py."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

from tests.api.api_support import assert_error


def test_ttl_of_one_second_in_real_time_over_http(make_server: Any) -> None:
    server = make_server("ttl")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/banks", json={"name": "t", "dim": 2}).status_code == 201
        memories = [
            {"id": "brief", "vector": [1.0, 0.0], "ttl_s": 1},
            {"id": "kept", "vector": [0.0, 1.0]},
        ]
        assert http.post("/v1/banks/t/memories", json={"memories": memories}).status_code == 200
        r = http.get("/v1/banks/t/memories/brief")  # within its second: visible
        assert r.status_code == 200 and http.get("/v1/banks/t").json()["count"] == 2
        ends = datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00")).timestamp()
        assert 0 < ends - time.time() <= 1.0
        time.sleep(ends - time.time() + 0.05)  # the server's clock is this machine's
        assert_error(http.get("/v1/banks/t/memories/brief"), 404)
        assert http.get("/v1/banks/t").json()["count"] == 1
        r = http.post("/v1/banks/t/query", json={"queries": [[1.0, 0.0]], "top_k": 5})
        assert [m["id"] for m in r.json()["results"][0]["matches"]] == ["kept"]
