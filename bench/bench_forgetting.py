"""Lifetimes and strengths: their cost on the unfiltered dense query, side by side.

Banks of the same N × d memories, queried with the same batch in one run: plain (today's
Model B: no bias at all), strengths (random s_μ: the log-prior bias added to every chunk's
logits), half-life (s = 1 that fade: the same bias), strengths + half-life (plus the common
offset in E), lifetimes (every memory with a ttl far in the future: reads check the next
expiry only) and all of them at once. Target (issue 14): each ≤ 1.10 × plain.

Then where a biased query's extra time goes: the pass itself (`model_b_pass`, the
kernels) with and without the bank's cached (N,) bias, and what building a bias per query
would cost (the (N,) log-prior from the float64 arrays, and its device copy), which the
bank does not do (it keeps the float32 bias and changes it only on writes). Prints ms per
batch and the ratios; writes bench/results/forgetting[_quick].json.

    python bench/bench_forgetting.py            # N = 10⁶, d = 128 (the machine is shared)
    python bench/bench_forgetting.py --quick    # N = 10⁵
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, print_table, write_json  # noqa: E402
from lam_engine import BankConfig, Engine  # noqa: E402
from lam_engine.kernels import model_b_pass  # noqa: E402
from lam_engine.math import strengths as sm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10⁵ instead of 10⁶")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=25, help="interleaved calls per variant")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    n, d = args.n or (100_000 if args.quick else 1_000_000), 128
    rng = np.random.default_rng(0)
    xi = rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    q = rng.normal(size=(args.batch, d)).astype(np.float32) / np.sqrt(d)
    s = rng.uniform(0.1, 10.0, size=n)
    ttl = np.full(n, 1e6)
    engine = Engine.open(None)
    hl = {"half_life_s": 3600.0}
    variants = {
        "plain": ({}, {}),
        "strengths": ({}, {"strengths": s}),
        "half-life": (hl, {}),
        "strengths + half-life": (hl, {"strengths": s}),
        "lifetimes": ({}, {"ttl_s": ttl}),
        "all three": (hl, {"strengths": s, "ttl_s": ttl}),
    }
    banks = {}
    for name, (cfg, extra) in variants.items():
        bank = "b" + "".join(c for c in name if c.isalnum())
        engine.create_bank(bank, BankConfig(dim=d, beta=8.0, **cfg))
        step = 100_000
        for i in range(0, n, step):
            part = {k: list(v[i : i + step]) for k, v in extra.items()}
            ids = [f"m{j}" for j in range(i, min(n, i + step))]
            engine.upsert(bank, xi[i : i + step], ids=ids, **part)
        banks[name] = bank
    print(f"loaded {len(banks)} banks of {n} × {d}", flush=True)
    queries = {
        name: (lambda b=bank: engine.query(b, q, steps=args.steps, top_k=5))
        for name, bank in banks.items()
    }
    med, low = interleaved(queries, args.reps)
    print_table(
        f"Engine.query, N = {n}, d = {d}, B = {args.batch}, steps = {args.steps}, top_k = 5"
        f" ({args.reps} interleaved calls each)",
        ["bank", "median ms", "× plain", "best ms", "× plain (best)"],
        [[k, med[k], med[k] / med["plain"], low[k], low[k] / low["plain"]] for k in med],
    )
    parts, parts_low = interleaved(
        attribution(engine._banks[banks["strengths"]].bank, q), args.reps
    )
    ref = "pass, no bias"
    print_table(
        "where a biased query's time goes: the kernels with the bank's cached bias",
        ["part", "median ms", f"× '{ref}'", "best ms"],
        [[k, v, v / parts[ref], parts_low[k]] for k, v in parts.items()],
    )
    write_json(
        "forgetting" + ("_quick" if args.quick else ""),
        {
            "machine": machine_info(),
            "n": n,
            "d": d,
            "batch": args.batch,
            "steps": args.steps,
            "reps": args.reps,
            "results": {
                k: {
                    "ms": med[k],
                    "ratio": med[k] / med["plain"],
                    "best_ms": low[k],
                    "best_ratio": low[k] / low["plain"],
                }
                for k in med
            },
            "parts_ms": parts,
            "parts_best_ms": parts_low,
        },
        args.out_dir,
    )


def interleaved(
    fns: dict[str, Callable[[], object]], reps: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and best ms of each fn, calling them in turn (a, b, c, a, b, c, ...): on a
    shared machine the load drifts, and interleaving spreads it over every variant alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return (
        {k: statistics.median(v) for k, v in times.items()},
        {k: min(v) for k, v in times.items()},
    )


def attribution(bank: object, q: np.ndarray) -> dict[str, Callable[[], object]]:
    """The kernels' passes with and without the cached bias, and a per-query bias build."""
    xi, bias = bank.xi, bank.bias  # type: ignore[attr-defined]
    pr = bank.priors  # type: ignore[attr-defined]
    v = torch.from_numpy(q)
    beta = 8.0
    n = xi.shape[0]

    def build() -> torch.Tensor:  # what the bank would do if it did not cache the bias
        rows = np.arange(n)
        lp = sm.log_prior(pr.strength[:n], pr.t_mu(rows), pr.t_ref, pr.half_life_s)
        return torch.from_numpy(lp).to(torch.float32)

    return {
        "pass, no bias": lambda: model_b_pass(xi, v, beta),
        "pass, cached bias": lambda: model_b_pass(xi, v, beta, bias=bias),
        "last pass (top-k, no Ξᵀp), no bias": lambda: model_b_pass(
            xi, v, beta, top_k=5, need_out=False
        ),
        "last pass (top-k, no Ξᵀp), cached bias": lambda: model_b_pass(
            xi, v, beta, bias=bias, top_k=5, need_out=False
        ),
        "bias add alone ((B, N) logits += bias)": lambda: torch.empty(len(q), n).add_(bias),
        "building the (N,) bias per query (not done)": build,
    }


if __name__ == "__main__":
    main()
