"""Lifetimes and strengths: their cost on the unfiltered dense query, side by side.

Four banks of the same N × d memories, queried with the same batch in one run:
plain (today's Model B: no bias at all), strengths (random s_μ: the log-prior bias added
to every chunk's logits), strengths + half-life (the same bias, plus the common offset in
E), and lifetimes (every memory with a ttl far in the future: reads check the next expiry
only). Target (issue 14): each ≤ 1.10 × plain. Prints ms per batch and the ratios.

    python bench/bench_forgetting.py            # N = 10⁶, d = 128 (the machine is shared)
    python bench/bench_forgetting.py --quick    # N = 10⁵
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, measure, print_table, write_json  # noqa: E402
from lam_engine import BankConfig, Engine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    n, d = (100_000, 128) if args.quick else (1_000_000, 128)
    rng = np.random.default_rng(0)
    xi = rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    q = rng.normal(size=(args.batch, d)).astype(np.float32) / np.sqrt(d)
    s = rng.uniform(0.1, 10.0, size=n)
    engine = Engine.open(None)
    variants = {
        "plain": ({}, {}),
        "strengths": ({}, {"strengths": s}),
        "strengths + half-life": ({"half_life_s": 3600.0}, {"strengths": s}),
        "lifetimes": ({}, {"ttl_s": np.full(n, 1e6)}),
    }
    banks = {}
    for name, (cfg, extra) in variants.items():
        bank = name.replace(" + ", "-").replace(" ", "")
        engine.create_bank(bank, BankConfig(dim=d, beta=8.0, **cfg))
        step = 100_000
        for i in range(0, n, step):
            part = {k: list(v[i : i + step]) for k, v in extra.items()}
            ids = [f"m{j}" for j in range(i, min(n, i + step))]
            engine.upsert(bank, xi[i : i + step], ids=ids, **part)
        banks[name] = bank
    # Rounds alternate the banks (the machine is shared: load drifts); best median wins.
    best = dict.fromkeys(banks, float("inf"))
    for _ in range(args.rounds):
        for name, bank in banks.items():
            t = measure(lambda b=bank: engine.query(b, q, steps=1, top_k=5), min_time=0.5)
            best[name] = min(best[name], t.median * 1e3)
    base = best["plain"]
    rows = [[name, ms, ms / base] for name, ms in best.items()]
    out = {name: {"ms": ms, "ratio": ms / base} for name, ms in best.items()}
    print_table(
        f"dense query, N = {n}, d = {d}, B = {args.batch}, steps = 1",
        ["bank", "ms", "× plain"],
        rows,
    )
    write_json(
        "forgetting" + ("_quick" if args.quick else ""),
        {"machine": machine_info(), "n": n, "d": d, "results": out},
    )


if __name__ == "__main__":
    main()
