"""`python -m bench --tiny --only cluster` end to end (the CI smoke of bench_cluster.py).

It starts its own one-node Ray cluster on the loopback addresses the package's cluster
uses, so it runs in `make test`'s second lane (scripts/test-ci.sh) before any test of this
package starts that one: the file name sorts first, and nothing here asks for `cluster`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.cluster_ci]


@pytest.mark.timeout(300)
def test_bench_cluster_tiny_runs_and_writes_its_model(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--only", "cluster", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=290,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "cluster_quick.json").read_text())
    assert [r["shards"] for r in data["rows"]] == [1, 2]
    for r in data["rows"]:
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] and r["qps"] > 0
        assert r["compute_ms"] >= 0 and r["router_ms"] >= 0
    machines = [x["machines"] for x in data["model"]["rows"]]
    assert machines[0] == 8 and machines[-1] == 64
    assert all(x["latency_ms"] > 0 and math.isfinite(x["qps"]) for x in data["model"]["rows"])
