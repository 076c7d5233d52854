"""Sharded banks in one process: per-shard compute against the router's merge overhead.

    python -m bench.bench_shards [--quick] [--n N] [--d D] [--batch B]

For K = 1, 2, 3 in-process shards of the same bank (N × d float32, Model B, dense), it
times a batch query (steps 1 and 5) and splits the time into the shards' passes (the
compute a cluster's nodes would do in parallel), the merges (math/merge.py, the router's
work per step) and the rest (cue, top-k lookup, results). On one machine the shards run
one after another, so no speed-up is to be read here: the point is how small the router's
share is, which is what a K-machine cluster adds to a shard's own pass. Numbers are from a
shared, noisy machine: compare the ratios of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lam_engine import BankConfig, Engine
from lam_engine.shards import local as shard_local
from lam_engine.shards import ops as shard_ops

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def timed(clock: dict[str, float]) -> Iterator[None]:
    """Accumulate the time spent in LocalShard.dense and in merge_round into `clock`."""
    dense, merge = shard_local.LocalShard.dense, shard_ops.merge_round

    def dense_t(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return dense(self, *a, **kw)
        finally:
            clock["shards"] += time.perf_counter() - t

    def merge_t(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return merge(*a, **kw)
        finally:
            clock["merge"] += time.perf_counter() - t

    shard_local.LocalShard.dense = dense_t  # type: ignore[method-assign]
    shard_ops.merge_round = merge_t
    try:
        yield
    finally:
        shard_local.LocalShard.dense = dense  # type: ignore[method-assign]
        shard_ops.merge_round = merge


def run(n: int, d: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    xi = (rng.normal(size=(n, d)) / np.sqrt(d)).astype(np.float32)
    queries = (xi[:batch] + 0.1 * rng.normal(size=(batch, d))).astype(np.float32)
    engine = Engine.open(None)
    rows = []
    for k in (1, 2, 3):
        engine.create_bank(f"k{k}", BankConfig(dim=d, beta=8.0, shards=k))
        for start in range(0, n, 50_000):
            engine.upsert(f"k{k}", xi[start : start + 50_000])
        for steps in (1, 5):
            engine.query(f"k{k}", queries, steps=steps)  # warm-up
            clock = {"shards": 0.0, "merge": 0.0}
            t0 = time.perf_counter()
            with timed(clock):
                for _ in range(repeats):
                    engine.query(f"k{k}", queries, steps=steps)
            total = (time.perf_counter() - t0) / repeats
            shards, merge = clock["shards"] / repeats, clock["merge"] / repeats
            rows.append({
                "shards": k, "steps": steps, "query_s": total, "shard_pass_s": shards,
                "per_shard_s": shards / k, "merge_s": merge, "rest_s": total - shards - merge,
                "queries_per_s": batch / total,
            })  # fmt: skip
        engine.delete_bank(f"k{k}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    n = args.n or (20_000 if args.quick else 200_000)
    rows = run(n, args.d, args.batch, 3 if args.quick else 5)
    base = {r["steps"]: r["query_s"] for r in rows if r["shards"] == 1}
    print(f"N = {n} × d = {args.d} float32, B = {args.batch}, β = 8, dense (noisy shared machine)")
    print("(K = 1 is the plain bank: no router, so its time is all in 'rest')")
    print(" K steps  query ms  ×K=1   shards ms  per shard ms  merge ms  merge %  rest ms  q/s")
    for r in rows:
        print(
            f"{r['shards']:>2} {r['steps']:>5} {1e3 * r['query_s']:>9.2f} "
            f"{r['query_s'] / base[r['steps']]:>5.2f} {1e3 * r['shard_pass_s']:>11.2f} "
            f"{1e3 * r['per_shard_s']:>13.2f} {1e3 * r['merge_s']:>9.3f} "
            f"{100 * r['merge_s'] / r['query_s']:>7.2f} {1e3 * r['rest_s']:>8.2f} "
            f"{r['queries_per_s']:>6.0f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("shards_quick.json" if args.quick else "shards.json")
    out.write_text(json.dumps({"n": n, "d": args.d, "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
