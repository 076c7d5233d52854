"""Schemathesis against a real server with API keys and small limits (stateful phase included).

Complements tests/integration/test_schemathesis.py (no auth, default limits, stateless
phases): here every request carries a write key, limits are small so the 413 paths are
reachable, and the stateful phase chains operations through links schemathesis infers
(POST /v1/banks → /v1/banks/{bank}/..., stored ids → /memories/{memory_id}).

    python tests/reliability/rel_fuzz.py --examples 600 --seed 3    # what scripts/fuzz_long.sh runs
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rel_harness import LamServer, figure

KEY = "fz-write-5b1d9e3c7a"
ENV = {
    "LAM_API_KEYS": f"{KEY}:write",
    "LAM_MAX_BODY_BYTES": "1048576",
    "LAM_MAX_STORE_BATCH": "64",
    "LAM_MAX_QUERY_BATCH": "16",
    "LAM_MAX_QUERY_STEPS": "200",
    "LAM_MAX_DYNAMICS_STEPS": "2000",
    "LAM_MAX_BANKS": "200",
}
CLI = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


@dataclass
class FuzzResult:
    returncode: int
    cases: int
    output: str


def seed_demo(server: LamServer) -> None:
    h = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(f"{server.url}/v1/banks", json={"name": "demo", "dim": 3}, headers=h)
    assert r.status_code in (200, 201), r.text
    mems = [{"id": f"m{i}", "vector": v} for i, v in enumerate([[1, 0, 0], [0, 1, 0], [0, 0, 1]])]
    r = httpx.post(f"{server.url}/v1/banks/demo/memories", json={"memories": mems}, headers=h)
    assert r.status_code == 200, r.text


def run_schemathesis(
    server: LamServer, phases: str, examples: int, seed: int, workers: int = 1, timeout: float = 600
) -> FuzzResult:
    cmd = [sys.executable, "-c", CLI, "run", f"{server.url}/openapi.json", "--phases", phases,
           "--checks", "not_a_server_error,response_schema_conformance",
           "--max-examples", str(examples), "--seed", str(seed), "--generation-database", "none",
           "--request-timeout", "30", "--workers", str(workers), "--no-color",
           "-H", f"Authorization: Bearer {KEY}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    m = re.search(r"(\d+) generated", done.stdout)
    return FuzzResult(done.returncode, int(m.group(1)) if m else 0, done.stdout + done.stderr)


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
    figure("fuzz_long", cases=res.cases, returncode=res.returncode, server_alive=alive,
           server_traceback=traceback, seed=args.seed)  # fmt: skip
    print(f"server log: {server.log_path}")
    return 0 if res.returncode == 0 and alive and not traceback else 1


if __name__ == "__main__":
    sys.exit(main())
