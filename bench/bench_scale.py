"""The largest bank: footprint, start-up (re)load time and query latency.

Builds an N × d float16 bank with an IVF prefilter through `Engine` (the durable path:
SQLite store with synchronous=NORMAL, which skips an fsync per transaction and only
shortens the build), closes it, then measures: the store's size on disk, the process's
resident memory, the time `Engine.open` takes to load the bank and build its index, and
query latency p50/p99 at B = 1 (prefiltered, as served) and the exact dense pass for
comparison. The default N = 10⁷, d = 128 float16 (2.6 GB of memories) fits this
24 GiB machine; `--n` picks another size.

    python -m bench.bench_scale [--quick] [--n N]

Writes bench/results/scale[_quick].json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, machine_info, print_table, write_json  # noqa: E402
from lam_engine.config import BankConfig, PrefilterConfig  # noqa: E402
from lam_engine.engine import STORE_FILE, Engine  # noqa: E402

BANK = "scale"
BATCH = 50_000  # memories per upsert transaction


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(path: Path, n: int, d: int, seed: int) -> float:
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with Engine.open(path, synchronous="NORMAL", default_device="cpu") as engine:
        cfg = BankConfig(dim=d, beta=16.0, normalize=True, dtype="float16",
                         prefilter=PrefilterConfig(kind="ivf"))  # fmt: skip
        engine.create_bank(BANK, cfg)
        for s in range(0, n, BATCH):
            x = rng.standard_normal((min(BATCH, n - s), d), dtype=np.float32)
            engine.upsert(BANK, x, [f"m{i}" for i in range(s, s + len(x))])
            if (s // BATCH) % 20 == 0:
                print(
                    f"  built {s + len(x):,} / {n:,} in {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
    return time.perf_counter() - t0


def run(n: int, d: int, n_queries: int, seed: int, keep: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lam-bench-scale-", dir=keep) as tmp:
        path = Path(tmp)
        rss0 = rss_mib()
        build_s = build(path, n, d, seed)
        disk = os.path.getsize(path / STORE_FILE)
        t0 = time.perf_counter()
        engine = Engine.open(path, synchronous="NORMAL", default_device="cpu")
        load_s = time.perf_counter() - t0
        try:
            info = engine.bank_info(BANK)
            rss = rss_mib() - rss0
            rng = np.random.default_rng(seed + 1)
            rows = rng.integers(0, n, n_queries)
            # Noisy stored memories: the use case (complete a corrupted pattern).
            gen = np.random.default_rng(seed)
            lat_pf, lat_exact, fell_back = [], [], 0
            for r in rows:
                q = engine.get_memory(BANK, f"m{r}").vector[None] + 0.2 * gen.standard_normal(
                    (1, d)
                )
                t = time.perf_counter()
                res = engine.query(BANK, q, top_k=5)
                lat_pf.append(time.perf_counter() - t)
                fell_back += int(not res.results[0].prefiltered)
            for r in rows[: max(2, n_queries // 10)]:
                q = engine.get_memory(BANK, f"m{r}").vector[None]
                t = time.perf_counter()
                engine.query(BANK, q, top_k=5, exact=True)
                lat_exact.append(time.perf_counter() - t)
        finally:
            engine.close()
    return {
        "machine": machine_info(),
        "n": n,
        "d": d,
        "dtype": "float16",
        "prefilter": "ivf",
        "build_s": build_s,
        "disk_bytes": disk,
        "bank_memory_bytes": info.memory_bytes,
        "process_rss_growth_mib": rss,
        "load_s": load_s,
        "query_p50_ms": 1000 * float(np.percentile(lat_pf, 50)),
        "query_p99_ms": 1000 * float(np.percentile(lat_pf, 99)),
        "exact_p50_ms": 1000 * float(np.percentile(lat_exact, 50)),
        "n_queries": n_queries,
        "fell_back": fell_back,
    }


def report(r: dict[str, Any]) -> str:
    return print_table(
        f"Largest bank: N={r['n']:,} × d={r['d']} {r['dtype']}, {r['prefilter']} prefilter",
        ["build s", "store on disk GB", "bank in memory GB", "RSS growth GB", "start-up (load) s",
         "query p50 ms", "query p99 ms", "exact dense p50 ms"],
        [[r["build_s"], r["disk_bytes"] / 1e9, r["bank_memory_bytes"] / 1e9,
          r["process_rss_growth_mib"] / 1024, r["load_s"], r["query_p50_ms"], r["query_p99_ms"],
          r["exact_p50_ms"]]],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10⁵")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--tmp", type=Path, default=None, help="where to build the store")
    args = parser.parse_args(argv)
    n = args.n or (100_000 if args.quick else 10_000_000)
    res = run(n, args.d, 20 if args.quick else 200, args.seed, args.tmp)
    res["markdown"] = report(res)
    write_json("scale_quick" if args.quick else "scale", res, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
