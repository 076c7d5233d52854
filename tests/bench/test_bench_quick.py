"""The benchmarks still run: `python -m bench --tiny` end to end in a subprocess (CI smoke).

Sizes are tiny: this checks that every script of ours runs and writes well-formed results
(so the benchmarks never rot), not how fast anything is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(230)
@pytest.mark.skipif(sys.platform != "linux", reason="the service benchmark needs Linux")
def test_bench_tiny_runs_and_writes_results(tmp_path: Path) -> None:
    # bench_cluster starts a real Ray cluster: it runs in the second lane of `make test`
    # (tests/cluster/test_bench_cluster_smoke.py), beside this run.
    names = [name for name in BENCHMARKS if name != "cluster"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out-dir", str(tmp_path), "--only", *names],
        cwd=ROOT, capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    engine = json.loads((tmp_path / "engine_quick.json").read_text())
    assert (tmp_path / "engine_quick.png").stat().st_size > 0
    assert engine["ceilings"]["gemm_gflops"]["float32"] > 0
    assert engine["ceilings"]["read_gbs"] > 0
    assert {(r["dtype"], r["b"]) for r in engine["rows"]} == {
        ("float32", 1),
        ("float32", 4),
        ("bfloat16", 1),
        ("bfloat16", 4),
    }
    for r in engine["rows"]:
        for key in ("sdpa", "pass", "pass_topk", "engine"):
            assert r[f"{key}_qps"] > 0 and math.isfinite(r[f"{key}_vs_sdpa"])
            assert r[f"{key}_ceiling"] > 0
    http = json.loads((tmp_path / "http_quick.json").read_text())
    queries = [r for r in http["rows"] if r["endpoint"] == "query"]
    assert {r["format"] for r in queries} == {"json", "json-steps0", "npy", "ivf-json",
                                              "ivf-json-steps0"}  # fmt: skip
    bad = [r for r in queries if r["errors"] or r["rate"] <= 0 or r["p99_ms"] < r["p50_ms"]]
    assert not bad, bad
    assert all(r["cpu_ms"] > 0 for r in http["rows"])  # server CPU per request, every row
    assert any(r["endpoint"] == "healthz" for r in http["rows"])
    scale = json.loads((tmp_path / "scale_quick.json").read_text())
    assert scale["n"] == 20_000 and scale["load_s"] > 0 and scale["query_p50_ms"] > 0
    for name, kinds in (("prefilter", {"flat", "ivf", "hnsw"}), ("prefilter384", {"flat", "ivf"})):
        pre = json.loads((tmp_path / f"{name}_quick.json").read_text())
        assert {r["kind"] for r in pre["rows"]} == kinds
        assert pre["dense"]["B1_ms"] > 0 and all(r["B1_ms"] > 0 for r in pre["rows"])
        # The flat index returns the true top-k, so its certificate must hold on every query.
        flat = [r for r in pre["rows"] if r["kind"] == "flat"]
        assert all(b["bound_holds"] for r in flat for b in r["noisy"]["by_beta"].values())
    bulk = json.loads((tmp_path / "store_http_quick.json").read_text())
    assert {r["path"] for r in bulk["rows"]} >= {
        "HTTP npy",
        "HTTP json",
        "SDK upload (vectors only: .npy bodies)",
    }
    assert all(r["vectors_per_s"] > 0 for r in bulk["rows"])
    store = json.loads((tmp_path / "store_reload_quick.json").read_text())
    assert store["store"]["FULL"]["vectors_per_s"] > 0 and store["load"]["seconds"] > 0


def test_bench_lists_every_benchmark() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    for name in ("engine", "http", "prefilter", "store_reload", "store_http", "scale"):
        assert name in out
