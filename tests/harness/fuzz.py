"""Schemathesis against a live server with every check on, from its own /openapi.json.

One runner for the bounded CI runs (tests/integration, tests/reliability) and the long ones
(scripts/fuzz_api.sh, scripts/fuzz_long.sh). Every check runs (`--checks all`), in positive
and negative modes; the built-in positive_data_acceptance is replaced by the hooks' variant
that knows the refusals JSON Schema cannot express (schemathesis_hooks.BEYOND_SCHEMA).

    python -m tests.harness.fuzz --examples 600 --seed 7     # its own server, >= 10 000 cases
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from .server import LamServer

HERE = Path(__file__).resolve().parent
HOOKS = HERE / "schemathesis_hooks.py"
CONFIG = HERE / "schemathesis.toml"
CLI = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
# Small step limits keep fuzzed /dynamics and /query calls short.
FUZZ_ENV = {
    "LAM_MAX_DYNAMICS_STEPS": "2000",
    "LAM_MAX_QUERY_STEPS": "200",
    "LAM_LOG_LEVEL": "warning",
}
PHASES = "examples,coverage,fuzzing"


@dataclass
class FuzzResult:
    returncode: int
    cases: int
    failures: int
    output: str


def seed_demo(url: str, headers: dict[str, str] | None = None) -> None:
    """The bank the OpenAPI examples name ("demo", dim 3), so examples reach real logic."""
    r = httpx.post(f"{url}/v1/banks", json={"name": "demo", "dim": 3}, headers=headers)
    assert r.status_code in (200, 201), r.text
    mems = [{"id": f"m{i}", "vector": v, "payload": {"i": i}}
            for i, v in enumerate([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]])]  # fmt: skip
    r = httpx.post(f"{url}/v1/banks/demo/memories", json={"memories": mems}, headers=headers)
    assert r.status_code == 200, r.text


def warm_embedder(url: str, headers: dict[str, str] | None = None) -> None:
    """Load the text model once before the fuzzing: the first text bank of a process loads
    it (seconds on a busy machine), which schemathesis would time as one slow response."""
    r = httpx.post(
        f"{url}/v1/banks",
        json={"name": "warm-text", "embedder": {"model": "all-MiniLM-L6-v2"}},
        headers=headers,
        timeout=120,
    )
    if r.status_code in (200, 201):
        httpx.delete(f"{url}/v1/banks/warm-text", headers=headers).raise_for_status()


def run_schemathesis(
    url: str,
    *,
    examples: int,
    seed: int,
    phases: str = PHASES,
    workers: int = 1,
    headers: dict[str, str] | None = None,
    timeout: float = 600,
    report: Path | None = None,
) -> FuzzResult:
    cmd = [sys.executable, "-c", CLI, "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
           "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "--mode", "all", "--phases", phases, "--max-examples", str(examples),
           "--seed", str(seed), "--generation-database", "none", "--request-timeout", "30",
           "--workers", str(workers), "--no-color"]  # fmt: skip
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if report is not None:
        cmd += ["--report", "junit", "--report-junit-path", str(report)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    out = done.stdout + done.stderr
    cases = re.search(r"(\d+) generated", out)
    failures = re.search(r"(\d+) failures?\b", out)
    return FuzzResult(
        done.returncode,
        int(cases.group(1)) if cases else 0,
        int(failures.group(1)) if failures else 0,
        out,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=600, help="max examples per operation")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--phases", default=f"{PHASES},stateful")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lam-fuzz-"))
    server = LamServer(root / "data", root / "server.log", env=FUZZ_ENV)
    server.start()
    try:
        seed_demo(server.url)
        # One worker: hypothesis' lambda-source cache is not thread-safe (spurious "AST
        # constructor recursion depth" errors with --workers 2 in schemathesis 4.32).
        res = run_schemathesis(
            server.url, examples=args.examples, seed=args.seed, phases=args.phases,
            timeout=6 * 3600, report=root / "junit.xml",
        )  # fmt: skip
        alive = server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
    print(res.output[-12000:])
    traceback = "Traceback" in server.log_text()
    print(f"FIGURE fuzz_api cases={res.cases} failures={res.failures} rc={res.returncode} "
          f"server_alive={alive} server_traceback={traceback} seed={args.seed}")  # fmt: skip
    print(f"server log and report in {root}")
    return 0 if res.returncode == 0 and alive and not traceback else 1


if __name__ == "__main__":
    sys.exit(main())
