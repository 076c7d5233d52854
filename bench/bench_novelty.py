"""Novelty-gated store benchmark: store throughput with and without `if_novel`, one run.

A Model B bank of N unit vectors (d = 128, float32, β = 32) in an on-disk engine (SQLite,
synchronous NORMAL), then batches of B = 1,000 stored in turn, interleaved so both see the
same machine load and the same bank size:

- plain: new random unit vectors, no gate (the write path as it was);
- gated, novel: new random unit vectors with `if_novel` (τ = −0.25: all of them are stored);
- gated, duplicates: near-copies of stored memories with `if_novel` (all skipped: no write);
- the judgment alone (`lam_engine.novelty.judge`: the B × N pass plus B × B in order);
- `/energy` of a batch (`Engine.energy`): the same B × N pass with nothing around it, the
  floor of any exact judgment (E needs every memory's term).

Prints memories/s of each and the ratios to plain; writes bench/results/novelty[_quick].json.
The machine is shared (other jobs run): read the ratios, which come from the same run.

    python bench/bench_novelty.py            # N = 10⁵
    python bench/bench_novelty.py --quick    # N = 10⁴
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_info, print_table, write_json  # noqa: E402
from lam_engine import BankConfig, Engine  # noqa: E402
from lam_engine.novelty import judge  # noqa: E402

D, BETA, TAU = 128, 32.0, -0.25
BANK = "bench"
T = TypeVar("T")


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10⁴ instead of 10⁵")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5, help="batches of each kind")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    n, b = args.n or (10_000 if args.quick else 100_000), args.batch
    rng = np.random.default_rng(0)
    xi = unit(rng, n)

    with tempfile.TemporaryDirectory() as tmp, Engine.open(tmp, synchronous="NORMAL") as engine:
        engine.create_bank(BANK, BankConfig(dim=D, beta=BETA, normalize=True))
        for lo in range(0, n, 10_000):
            engine.upsert(BANK, xi[lo : lo + 10_000])
        slot = engine._slot(BANK)
        times: dict[str, list[float]] = {
            k: [] for k in ("plain", "novel", "dups", "judge", "energy")
        }
        counts = {"novel_stored": 0, "dups_stored": 0}

        def timed(key: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            times[key].append(time.perf_counter() - t0)
            return out

        # One untimed round first (allocations, oneDNN primitive caches).
        for rep in range(args.reps + 1):
            fresh, gated = unit(rng, b), unit(rng, b)
            dups = xi[rng.integers(0, n, b)] + 0.02 * rng.standard_normal((b, D))
            dups = dups.astype(np.float32)
            res_plain = timed("plain", engine.upsert, BANK, fresh)
            res_novel = timed("novel", engine.upsert, BANK, gated, if_novel=TAU)
            res_dups = timed("dups", engine.upsert, BANK, dups, if_novel=TAU)
            x = slot.bank.prepare(unit(rng, b)).vectors
            timed("judge", judge, slot.bank, x, TAU, engine.chunk_bytes)
            timed("energy", engine.energy, BANK, x)
            if rep == 0:
                for v in times.values():
                    v.clear()
                continue
            assert len(res_plain.ids) == b
            counts["novel_stored"] += len(res_novel.ids)
            counts["dups_stored"] += len(res_dups.ids)
        final_count = slot.bank.count

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: b / v for k, v in med.items()}
    labels = {
        "plain": "plain store (no gate)",
        "novel": "if_novel, all novel (stored)",
        "dups": "if_novel, all near-duplicates (skipped)",
        "judge": "judgment alone (B × N pass + B × B)",
        "energy": "/energy of the batch (the B × N pass alone)",
    }
    rows = [[labels[k], rate[k], med[k] * 1e3, med[k] / med["plain"]] for k in labels]
    print_table(
        f"store with and without if_novel, N ≈ {n:,} × {D}, B = {b:,}, β = {BETA}, τ = {TAU}"
        f" (median of {args.reps} batches each; shared machine)",
        ["batch", "memories/s", "ms per batch", "time / plain"],
        rows,
    )
    print(
        f"\nstored by the gate: {counts['novel_stored']} of {args.reps * b} novel, "
        f"{counts['dups_stored']} of {args.reps * b} near-duplicates; bank ends at {final_count:,}"
    )
    write_json(
        "novelty_quick" if args.quick else "novelty",
        {
            "machine": machine_info(),
            "n": n,
            "d": D,
            "batch": b,
            "beta": BETA,
            "tau": TAU,
            "reps": args.reps,
            "median_s": med,
            "memories_per_s": rate,
            "ratio_to_plain": {k: med[k] / med["plain"] for k in med},
            **counts,
        },
        args.out_dir,
    )


if __name__ == "__main__":
    main()
