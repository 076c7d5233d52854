"""Overload: more concurrent queries than LAM_MAX_PENDING_QUERIES get 503 overloaded.

A real server process (the bound is about what a process holds while it waits), slow
queries (many steps, tol 0) and far more concurrent clients than the bound: every answer
is a 200 or a 503 `overloaded` with Retry-After, nothing else, and the process does not
grow with the refused load.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.harness import LamServer

BOUND = 4
CLIENTS = 40
ROUNDS = 3


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = LamServer(
        tmp_path / "data",
        tmp_path / "server.log",
        env={"LAM_MAX_PENDING_QUERIES": str(BOUND), "LAM_TORCH_THREADS": "1"},
    )
    srv.start()
    yield srv
    srv.stop()


async def _storm(url: str, body: dict[str, object]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return list(
            await asyncio.gather(
                *(http.post("/v1/banks/slow/query", json=body) for _ in range(CLIENTS))
            )
        )


def test_more_queries_than_the_bound_get_503_overloaded(server: LamServer) -> None:
    rng = np.random.default_rng(3)
    xi = rng.standard_normal((20_000, 64)).astype(np.float32)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/v1/banks", json={"name": "slow", "dim": 64}).status_code == 201
        for part in np.array_split(xi, 4):
            r = http.post(
                "/v1/banks/slow/memories",
                json={"memories": [{"vector": v.tolist()} for v in part]},
            )
            assert r.status_code == 200
    body = {"queries": [xi[0].tolist()], "steps": 40, "tol": 0.0, "beta": 0.01}
    rss0 = server.rss_kb()
    statuses: Counter[int] = Counter()
    for _ in range(ROUNDS):
        for r in asyncio.run(_storm(server.url, body)):
            statuses[r.status_code] += 1
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "overloaded"
            else:
                assert r.status_code == 200, r.text
    print(f"FIGURE overload: {dict(statuses)} (bound {BOUND}, {CLIENTS} clients × {ROUNDS})")
    assert set(statuses) == {200, 503}, statuses
    assert statuses[200] >= BOUND  # the admitted ones were answered
    grown_mib = (server.rss_kb() - rss0) / 1024
    assert grown_mib < 200, f"server grew {grown_mib:.0f} MiB under refused load"
    metrics = httpx.get(f"{server.url}/metrics").text
    rejected = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('lam_query_rejected_total{bank="slow"}')
    )
    assert rejected == statuses[503]
    assert "lam_query_pending 0.0" in metrics
