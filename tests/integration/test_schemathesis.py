"""Property-based fuzzing of the live server from its own /openapi.json (bounded, < 60 s).

Checks: no 5xx for anything a client sends, and every response matches its documented schema.
scripts/fuzz_api.sh runs the same with far more cases.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from live_server import LamServer

# Runs schemathesis' CLI in this interpreter (no reliance on a console script on PATH).
CLI = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def seed_demo_bank(base: str) -> None:
    """The bank the OpenAPI examples name ("demo", dim 3), so examples reach real logic."""
    assert httpx.post(f"{base}/v1/banks", json={"name": "demo", "dim": 3}).status_code == 201
    mems = [{"id": f"m{i}", "vector": v, "payload": {"i": i}}
            for i, v in enumerate([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]])]  # fmt: skip
    r = httpx.post(f"{base}/v1/banks/demo/memories", json={"memories": mems})
    assert r.status_code == 200


def run_schemathesis(
    base: str,
    max_examples: int,
    report: Path,
    timeout: float,
    phases: str = "examples,coverage,fuzzing",
) -> None:
    cmd = [sys.executable, "-c", CLI, "run", f"{base}/openapi.json", "--phases", phases,
           "--checks", "not_a_server_error,response_schema_conformance",
           "--max-examples", str(max_examples), "--seed", "20240601",
           "--generation-database", "none", "--request-timeout", "20",
           "--workers", "1", "--no-color", "--report", "junit",
           "--report-junit-path", str(report)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout


def test_schemathesis_finds_no_server_errors_or_schema_violations(
    live_server: LamServer, tmp_path: Path
) -> None:
    seed_demo_bank(live_server.url)
    run_schemathesis(live_server.url, 10, tmp_path / "junit.xml", timeout=120)
    assert live_server.proc.poll() is None, "the server died under fuzzing"
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
