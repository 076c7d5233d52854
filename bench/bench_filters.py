"""Payload filter micro-benchmark: the row selection alone, indexed vs unindexed.

N synthetic payloads {"tenant": "t<k>", "year": ..., "tags": [...]} with 100 tenants, so
`tenant = t7` selects 1 %. Times `evaluate` of that filter with a `keyword` index on
`tenant` (two binary searches, a slice, a mask) and without (a Python loop over every
payload), the same with an extra unindexed condition (scanned on the 1 % only), and the
index build. Prints both and the ratio; writes bench/results/filters[_quick].json.
The selection is what a filtered query adds before its pass over Ξ (not measured here).

    python bench/bench_filters.py            # N = 10⁶ (run it once: the machine is shared)
    python bench/bench_filters.py --quick    # N = 10⁵
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, measure, print_table, write_json  # noqa: E402
from lam_engine.filters import RowsView, evaluate, parse_filter  # noqa: E402
from lam_engine.payload_index import PayloadIndexes  # noqa: E402

TENANTS = 100  # one tenant = 1 % of the rows


def payloads(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    tenant = rng.integers(0, TENANTS, n).tolist()
    year = rng.integers(2000, 2026, n).tolist()
    tag = rng.integers(0, 8, n).tolist()
    return [
        {"tenant": f"t{t}", "year": y, "tags": [f"g{g}", "all"]}
        for t, y, g in zip(tenant, year, tag, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10⁵ instead of 10⁶")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)

    pls = payloads(n)
    ids = [f"m{i}" for i in range(n)]
    alive = np.ones(n, dtype=bool)
    t0 = time.perf_counter()
    indexes = PayloadIndexes({"tenant": "keyword"})
    indexes.add(np.arange(n), pls)
    build_s = time.perf_counter() - t0
    plain, indexed = RowsView(ids, pls, alive), RowsView(ids, pls, alive, indexes)
    evaluate(parse_filter({"must": []}), indexed)  # the first read sorts the index entries

    one = parse_filter({"must": [{"key": "tenant", "match": {"value": "t7"}}]})
    both = parse_filter(
        {
            "must": [{"key": "tenant", "match": {"value": "t7"}}],
            "must_not": [{"key": "tags", "match": {"value": "g3"}}],
        }
    )
    selected = int(evaluate(one, indexed).sum())
    assert (evaluate(one, indexed) == evaluate(one, plain)).all()
    assert (evaluate(both, indexed) == evaluate(both, plain)).all()
    # The unindexed scan is ~1 s at 10⁶: two timed runs, not a sweep (2 shared cores).
    t_plain = measure(lambda: evaluate(one, plain), min_time=0.0, min_reps=2, max_reps=2)
    t_idx = measure(lambda: evaluate(one, indexed), min_time=0.5)
    t_both = measure(lambda: evaluate(both, indexed), min_time=0.5)
    rows = [
        ["tenant = t7, keyword index", selected, t_idx.best * 1e3, t_idx.median * 1e3],
        ["tenant = t7, no index (scan)", selected, t_plain.best * 1e3, t_plain.median * 1e3],
        [
            "tenant = t7 (indexed) and not tags = g3 (scan of the 1 %)",
            int(evaluate(both, indexed).sum()),
            t_both.best * 1e3,
            t_both.median * 1e3,
        ],
    ]
    print_table(f"filter selection, N = {n:,}", ["filter", "rows", "best ms", "median ms"], rows)
    ratio = t_plain.best / t_idx.best
    print(
        f"\nindexed {t_idx.best * 1e3:.2f} ms vs unindexed {t_plain.best * 1e3:.1f} ms: "
        f"{ratio:.0f}× faster; index build {build_s:.2f} s for {n:,} rows"
    )
    write_json(
        "filters_quick" if args.quick else "filters",
        {
            "machine": machine_info(),
            "n": n,
            "selected": selected,
            "indexed_ms": t_idx.best * 1e3,
            "unindexed_ms": t_plain.best * 1e3,
            "indexed_plus_scan_ms": t_both.best * 1e3,
            "ratio": ratio,
            "index_build_s": build_s,
        },
        args.out_dir,
    )


if __name__ == "__main__":
    main()
