"""Filtered query end to end (Engine.query): a 1 % keyword filter vs the unfiltered dense query.

An in-memory bank of N × d float32 memories with payloads {"tenant": "t<k>"} (100 tenants,
so `tenant = t7` selects 1 %) and a `keyword` index on `tenant`; one query, steps 1, top_k 5,
dense (no prefilter). Rows: the unfiltered query, the indexed 1 % filter (selection by the
index, then the pass over the gathered 1 %), and the same filter on an unindexed key
(`tenant2`, same values: a scan of every payload). Issue 14's target: indexed ≤ 1/10 of
the unfiltered query. Writes bench/results/filtered_query[_quick].json.

    python bench/bench_filtered_query.py            # N = 10⁶, d = 128 (run once: shared machine)
    python bench/bench_filtered_query.py --quick    # N = 10⁵
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, measure, print_table, write_json  # noqa: E402
from lam_engine import BankConfig, Engine  # noqa: E402

TENANTS = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10⁵ instead of 10⁶")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    n, d = args.n or (100_000 if args.quick else 1_000_000), args.d
    rng = np.random.default_rng(0)
    xi = rng.standard_normal((n, d)).astype(np.float32)
    tenant = rng.integers(0, TENANTS, n)
    pls = [{"tenant": f"t{t}", "tenant2": f"t{t}"} for t in tenant.tolist()]
    cue = xi[:1] + 0.1 * rng.standard_normal((1, d)).astype(np.float32)
    engine = Engine.open(None, default_device="cpu")
    engine.create_bank("b", BankConfig(dim=d, beta=1.0, payload_index={"tenant": "keyword"}))
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        engine.upsert("b", xi[s:e], [f"m{i}" for i in range(s, e)], pls[s:e])
    indexed = {"must": [{"key": "tenant", "match": {"value": "t7"}}]}
    unindexed = {"must": [{"key": "tenant2", "match": {"value": "t7"}}]}
    selected = engine.count("b", indexed)

    def q(flt: dict[str, Any] | None) -> object:
        return engine.query("b", cue, steps=1, top_k=5, filter=flt)

    t_all = measure(lambda: q(None), min_time=1.0)
    t_idx = measure(lambda: q(indexed), min_time=1.0)
    t_scan = measure(lambda: q(unindexed), min_time=0.0, min_reps=2, max_reps=2)
    rows = [
        ["unfiltered (dense)", n, t_all.best * 1e3, t_all.median * 1e3],
        ["tenant = t7, keyword index", selected, t_idx.best * 1e3, t_idx.median * 1e3],
        ["tenant2 = t7, no index (scan)", selected, t_scan.best * 1e3, t_scan.median * 1e3],
    ]
    print_table(
        f"filtered query, N = {n:,}, d = {d}", ["query", "rows", "best ms", "median ms"], rows
    )
    ratio = t_idx.best / t_all.best
    print(f"\nindexed 1 % filter / unfiltered = {ratio:.3f} (target ≤ 0.1)")
    write_json(
        "filtered_query_quick" if args.quick else "filtered_query",
        {
            "machine": machine_info(),
            "n": n,
            "d": d,
            "selected": selected,
            "unfiltered_ms": t_all.best * 1e3,
            "indexed_ms": t_idx.best * 1e3,
            "unindexed_ms": t_scan.best * 1e3,
            "indexed_over_unfiltered": ratio,
        },
        args.out_dir,
    )


if __name__ == "__main__":
    main()
