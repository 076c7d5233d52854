"""Load test: N concurrent async clients, mixed store/query, against a real `python -m service`.

    python -m scripts.load_test --clients 64 --seconds 60 [--store-fraction 0.2] [--url URL]

Without --url a throwaway server is started (data in a temp dir) and its RSS (VmRSS) is
reported before and after. Prints one FIGURE line: requests, errors, rps, p50/p99 latencies.
Exit status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from tests.reliability.rel_harness import LamServer
from tests.reliability.rel_load import drive, prepare_bank


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--store-fraction", type=float, default=0.2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--memories", type=int, default=4000, help="preloaded into the bank")
    ap.add_argument("--bank", default="load")
    ap.add_argument("--url", help="an already running server (no RSS figures then)")
    ap.add_argument("--warmup", type=float, default=3.0)
    args = ap.parse_args()
    server: LamServer | None = None
    root = Path(tempfile.mkdtemp(prefix="lam-load-"))
    if args.url:
        url = args.url.rstrip("/")
    else:
        server = LamServer(root / "data", root / "server.log", env={"LAM_LOG_LEVEL": "warning"})
        server.start()
        url = server.url
    try:
        prepare_bank(url, args.bank, args.dim, args.memories)
        asyncio.run(drive(url, args.bank, args.dim, args.clients, args.warmup, args.store_fraction))
        before = server.rss_kb() if server else 0
        rep = asyncio.run(
            drive(url, args.bank, args.dim, args.clients, args.seconds, args.store_fraction)
        )
        after = server.rss_kb() if server else 0
    finally:
        if server:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    extra = {"rss_before_mb": before / 1024, "rss_after_mb": after / 1024} if server else {}
    rep.line("load", **extra)
    for err in rep.errors[:10]:
        print("ERROR", err)
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
