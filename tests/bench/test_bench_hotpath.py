"""bench/bench_hotpath.py at smoke sizes: every layer is timed, for 1 thread and the default.

Not how fast anything is (never timed assertions), only that the script runs, restores the
thread count it changed, and writes every column its table and the docs read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench import bench_hotpath

LAYERS = ("gemm_f32", "gemm_f16", "gemm_bf16", "pass", "engine", "parse", "encode")


def test_tiny_run_writes_every_layer(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    assert bench_hotpath.main(["--tiny", "--out-dir", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # the benchmark's setting does not leak
    res = json.loads((tmp_path / "hotpath_quick.json").read_text())
    n, d, batches, _ = bench_hotpath.SIZES["tiny"]
    assert (res["n"], res["d"]) == (n, d)
    want = {(t, b) for t in {1, threads} for b in batches}
    assert {(r["threads"], r["b"]) for r in res["rows"]} == want
    for r in res["rows"]:
        assert all(r[k] > 0 for k in LAYERS), r
        # the time to read Ξ once follows from the bandwidth measured in the same run
        assert abs(r["read_ms"] - n * d * 4 / r["read_gbs"] / 1e6) < 1e-9
    assert "Engine.query" in res["markdown"]


def test_layers_answer_the_query_they_time() -> None:
    """The engine timed is a working bank: its steps-0 answer is the cue's exact top match."""
    xi = bench_hotpath.unit_rows(500, 32, seed=3)
    engine = bench_hotpath.make_engine(xi)
    try:
        cue = xi[7:8].numpy().copy()
        out = engine.query("bench", cue, steps=0, top_k=3, with_payload=False)
        assert out.results[0].matches[0].id == "m7"
        assert out.results[0].steps == 0
    finally:
        engine.close()
