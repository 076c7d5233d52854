"""Load: 64 concurrent clients, mixed store/query, for a bounded time; no errors, bounded RSS.

LAM_LOAD_SECONDS (default 12) sets the measured phase; scripts/load_test.py runs longer.
"""

from __future__ import annotations

import asyncio
import os

from rel_harness import LamServer
from rel_load import drive, prepare_bank

DIM = 64
CLIENTS = 64


def test_64_clients_mixed_load_no_errors_bounded_memory(shared_server: LamServer) -> None:
    seconds = float(os.environ.get("LAM_LOAD_SECONDS", "12"))
    url = shared_server.url
    prepare_bank(url, "load", DIM, 4000)
    warm = asyncio.run(drive(url, "load", DIM, CLIENTS, 2.0))  # first-touch allocations
    assert warm.errors == [], warm.errors[:5]
    rss_before = shared_server.rss_kb()
    rep = asyncio.run(drive(url, "load", DIM, CLIENTS, seconds))
    rss_after = shared_server.rss_kb()
    rep.line("load", rss_before_mb=rss_before / 1024, rss_after_mb=rss_after / 1024)
    assert rep.errors == [], rep.errors[:5]
    assert rep.requests > CLIENTS, "the driver barely ran"
    assert rep.latencies["store"] and rep.latencies["query"]
    # Stores add ~8 memories × 64 floats per request: a few MB at most; the rest would be a leak.
    assert rss_after <= 1.5 * rss_before + 64 * 1024, (rss_before, rss_after)
