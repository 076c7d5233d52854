"""Schemathesis against the live server from its own /openapi.json, every check on (bounded).

Positive and negative data, status codes, content types, headers and `Allow`; the refusals
JSON Schema cannot express are listed in tests/harness/schemathesis_hooks.py.
scripts/fuzz_api.sh runs the same with >= 10 000 cases.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.harness import LamServer
from tests.harness.fuzz import run_schemathesis, seed_demo, warm_embedder


def test_schemathesis_all_checks_find_nothing(live_server: LamServer, tmp_path: Path) -> None:
    seed_demo(live_server.url)
    warm_embedder(live_server.url)
    res = run_schemathesis(
        live_server.url, examples=10, seed=20240601, timeout=120, report=tmp_path / "junit.xml"
    )
    print(f"FIGURE schemathesis_bounded cases={res.cases} failures={res.failures}")
    assert res.returncode == 0, res.output[-8000:]
    assert res.failures == 0 and res.cases > 1000, res.output[-3000:]
    assert live_server.proc is not None and live_server.proc.poll() is None, "server died"
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
