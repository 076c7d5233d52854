"""Async load driver: N concurrent clients (asyncio tasks, one connection each), mixed store/query.

Used by test_rel_load.py (bounded) and scripts/load_test.py (longer, configurable).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from tests.reliability.rel_harness import figure, percentile


@dataclass
class LoadReport:
    clients: int
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"store": [], "query": []})
    errors: list[str] = field(default_factory=list)
    # (seconds since the start, value) from drive's `sample`, e.g. the server's RSS.
    samples: list[tuple[float, float]] = field(default_factory=list)

    def sample_at(self, fraction: float) -> float:
        """The first sample taken at or after `fraction` of the run (the last one if none)."""
        t = fraction * self.seconds
        return next((v for s, v in self.samples if s >= t), self.samples[-1][1])

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + len(self.errors)

    def line(self, name: str = "load", **extra: object) -> str:
        every = self.latencies["store"] + self.latencies["query"]
        return figure(
            name,
            clients=self.clients,
            seconds=self.seconds,
            requests=self.requests,
            errors=len(self.errors),
            rps=self.requests / max(self.seconds, 1e-9),
            p50_ms=1000 * percentile(every, 50),
            p99_ms=1000 * percentile(every, 99),
            query_p50_ms=1000 * percentile(self.latencies["query"], 50),
            query_p99_ms=1000 * percentile(self.latencies["query"], 99),
            store_p50_ms=1000 * percentile(self.latencies["store"], 50),
            store_p99_ms=1000 * percentile(self.latencies["store"], 99),
            **extra,
        )


async def _client(
    url: str, bank: str, dim: int, n: int, until: float, store_fraction: float, rep: LoadReport
) -> None:
    rng = random.Random(n)
    nprng = np.random.default_rng(n)
    seq = 0
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as c:
        while time.monotonic() < until:
            store = rng.random() < store_fraction
            body: dict[str, Any]
            if store:
                xi = nprng.standard_normal((8, dim)).astype(np.float32)  # (8, d)
                body = {
                    "memories": [
                        {"id": f"l{n}-{seq}-{j}", "vector": xi[j].tolist(), "payload": {"c": n}}
                        for j in range(8)
                    ]
                }
                seq += 1
                path = f"/v1/banks/{bank}/memories"
            else:
                q = nprng.standard_normal((1, dim)).astype(np.float32)  # (1, d)
                body = {"queries": q.tolist(), "top_k": 5, "steps": 2}
                path = f"/v1/banks/{bank}/query"
            t0 = time.perf_counter()
            try:
                r = await c.post(path, json=body)
            except httpx.HTTPError as exc:
                rep.errors.append(f"{path}: {type(exc).__name__}")
                continue
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                rep.errors.append(f"{path}: {r.status_code} {r.text[:200]}")
            else:
                rep.latencies["store" if store else "query"].append(dt)


async def drive(
    url: str,
    bank: str,
    dim: int,
    clients: int,
    seconds: float,
    store_fraction: float = 0.2,
    sample: Callable[[], float] | None = None,
    sample_every: float = 0.25,
) -> LoadReport:
    """Run the clients for `seconds`; `sample` (if given) is read every `sample_every` s."""
    rep = LoadReport(clients)
    t0 = time.monotonic()
    until = t0 + seconds

    async def sampler() -> None:
        assert sample is not None
        while True:
            rep.samples.append((time.monotonic() - t0, sample()))
            if time.monotonic() >= until:
                return
            await asyncio.sleep(sample_every)

    tasks = [_client(url, bank, dim, n, until, store_fraction, rep) for n in range(clients)]
    await asyncio.gather(*tasks, *([sampler()] if sample is not None else []))
    rep.seconds = time.monotonic() - t0
    if sample is not None:
        rep.samples.append((rep.seconds, sample()))
    return rep


def prepare_bank(url: str, bank: str, dim: int, memories: int) -> None:
    with httpx.Client(base_url=url, timeout=120.0) as c:
        r = c.post("/v1/banks", json={"name": bank, "dim": dim, "beta": 4.0, "normalize": True})
        assert r.status_code in (200, 201), r.text
        xi = np.random.default_rng(0).standard_normal((memories, dim)).astype(np.float32)
        for start in range(0, memories, 2000):
            rows = xi[start : start + 2000]
            body = {
                "memories": [
                    {"id": f"seed-{start + j}", "vector": v.tolist()} for j, v in enumerate(rows)
                ]
            }
            r = c.post(f"/v1/banks/{bank}/memories", json=body)
            assert r.status_code == 200, r.text
