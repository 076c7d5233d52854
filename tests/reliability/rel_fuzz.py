"""Schemathesis against a real server with API keys and small limits (stateful phase included).

Complements tests/integration/test_schemathesis.py (no auth, default limits, stateless
phases): here every request carries a write key, limits are small so the 413 paths are
reachable, and the stateful phase chains operations through links schemathesis infers
(POST /v1/banks → /v1/banks/{bank}/..., stored ids → /memories/{memory_id}). Both run every
check through the one runner, tests/harness/fuzz.py.

    python -m tests.reliability.rel_fuzz --examples 600 --seed 3   # what scripts/fuzz_long.sh runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.harness import fuzz
from tests.harness.fuzz import FuzzResult
from tests.reliability.rel_harness import LamServer, figure

KEY = "fz-write-5b1d9e3c7a"
AUTH = {"Authorization": f"Bearer {KEY}"}
ENV = {
    "LAM_API_KEYS": f"{KEY}:write",
    "LAM_MAX_BODY_BYTES": "1048576",
    "LAM_MAX_STORE_BATCH": "64",
    "LAM_MAX_QUERY_BATCH": "16",
    "LAM_MAX_QUERY_STEPS": "200",
    "LAM_MAX_DYNAMICS_STEPS": "2000",
    "LAM_MAX_BANKS": "200",
}


def seed_demo(server: LamServer) -> None:
    fuzz.seed_demo(server.url, AUTH)


def run_schemathesis(
    server: LamServer, phases: str, examples: int, seed: int, workers: int = 1, timeout: float = 600
) -> FuzzResult:
    return fuzz.run_schemathesis(
        server.url, examples=examples, seed=seed, phases=phases, workers=workers,
        headers=AUTH, timeout=timeout,
    )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=600, help="max examples per operation/phase")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lam-fuzz-"))
    server = LamServer(root / "data", root / "server.log", env=ENV)
    server.start()
    try:
        seed_demo(server)
        res = run_schemathesis(
            server, args.phases, args.examples, args.seed, args.workers, timeout=6 * 3600
        )
        alive = server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
    print(res.output[-8000:])
    traceback = "Traceback" in server.log_text()
    figure("fuzz_long", cases=res.cases, failures=res.failures, returncode=res.returncode,
           server_alive=alive, server_traceback=traceback, seed=args.seed)  # fmt: skip
    print(f"server log: {server.log_path}")
    return 0 if res.returncode == 0 and alive and not traceback else 1


if __name__ == "__main__":
    sys.exit(main())
