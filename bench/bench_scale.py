"""The largest bank: footprint, start-up (re)load time and query latency.

Builds an N × d float16 bank with an IVF prefilter through `Engine` (the durable path:
SQLite store with synchronous=NORMAL, which skips an fsync per transaction and only
shortens the build), closes it (which saves the trained IVF index beside the store), then
measures: the store's and the saved index's size on disk, the process's resident memory,
the time `Engine.open` takes to load the bank and its saved index, and query latency
p50/p99 at B = 1 (prefiltered, as served) and the exact dense pass for comparison.
Queries are the realistic workload of `bench_prefilter.py`: a stored memory plus Gaussian
noise of L2 norm 0.3, renormalized, at β = 32, so the certified prefiltered path is what
is timed; the table counts the queries that fell back to exact retrieval anyway.
`--rebuild` then also times a start-up without the saved index (as after a crash that
followed writes: the index is retrained from the store). The default N = 10⁷, d = 128
float16 (2.6 GB of memories) fits this 24 GiB machine; `--n` picks another size.

    python -m bench.bench_scale [--quick] [--n N] [--rebuild]

Writes bench/results/scale[_quick].json.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from lam_engine.engine import INDEX_DIR, STORE_FILE, Engine  # noqa: E402

BANK = "scale"
BATCH = 50_000  # memories per upsert transaction
BETA = 32.0  # as bench_prefilter.py's realistic case
NOISE = 0.3  # L2 norm of the noise added to a stored memory to make a query


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(path: Path, n: int, d: int, seed: int) -> tuple[float, float]:
    """Seconds to (store every batch, close the engine: that saves the index)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    engine = Engine.open(path, synchronous="NORMAL", default_device="cpu")
    try:
        cfg = BankConfig(dim=d, beta=BETA, normalize=True, dtype="float16",
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
        build_s = time.perf_counter() - t0
    finally:
        t1 = time.perf_counter()
        engine.close()
    return build_s, time.perf_counter() - t1


def noisy_cue(memory: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """(1, d): the memory plus noise of L2 norm NOISE, renormalized (bench_prefilter.py)."""
    noise = gen.standard_normal(memory.shape[0])
    noise *= NOISE / np.linalg.norm(noise)
    q = memory.astype(np.float64) + noise
    return (q / np.linalg.norm(q)).astype(np.float32)[None]


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else 0


def timed_open(path: Path) -> tuple[Engine, float]:
    t0 = time.perf_counter()
    engine = Engine.open(path, synchronous="NORMAL", default_device="cpu")
    return engine, time.perf_counter() - t0


def run(
    n: int, d: int, n_queries: int, seed: int, keep: Path | None, rebuild: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lam-bench-scale-", dir=keep) as tmp:
        path = Path(tmp)
        rss0 = rss_mib()
        build_s, close_s = build(path, n, d, seed)
        print(f"  built in {build_s:.0f} s, closed (index saved) in {close_s:.1f} s", flush=True)
        disk = os.path.getsize(path / STORE_FILE)
        index_disk = dir_bytes(path / INDEX_DIR)
        engine, load_s = timed_open(path)
        print(f"  reopened in {load_s:.1f} s", flush=True)
        try:
            info = engine.bank_info(BANK)
            index_loaded = engine._banks[BANK].index_origin == "loaded"
            rss = rss_mib() - rss0
            rng = np.random.default_rng(seed + 1)
            rows = rng.integers(0, n, n_queries)
            # Noisy stored memories: the use case (complete a corrupted pattern).
            gen = np.random.default_rng(seed)
            cues = [noisy_cue(engine.get_memory(BANK, f"m{r}").vector, gen) for r in rows]
            lat_pf, lat_exact, fell_back = [], [], 0
            for q in cues:
                t = time.perf_counter()
                res = engine.query(BANK, q, top_k=5)
                lat_pf.append(time.perf_counter() - t)
                fell_back += int(not res.results[0].prefiltered)
            for q in cues[: max(2, n_queries // 10)]:
                t = time.perf_counter()
                engine.query(BANK, q, top_k=5, exact=True)
                lat_exact.append(time.perf_counter() - t)
        finally:
            engine.close()
            del engine  # its bank and index: freed before the next open
        rebuild_s = None
        if rebuild:
            # As after a crash that followed writes: no usable saved index.
            shutil.rmtree(path / INDEX_DIR)
            engine, rebuild_s = timed_open(path)
            rebuilt = engine._banks[BANK].index_origin == "built"
            engine.close()
            print(f"  reopened without the saved index in {rebuild_s:.1f} s", flush=True)
            assert rebuilt
    return {
        "machine": machine_info(),
        "n": n,
        "d": d,
        "dtype": "float16",
        "prefilter": "ivf",
        "beta": BETA,
        "query_noise_l2": NOISE,
        "index": info.index,
        "build_s": build_s,
        "close_s": close_s,
        "disk_bytes": disk,
        "index_disk_bytes": index_disk,
        "bank_memory_bytes": info.memory_bytes,
        "process_rss_growth_mib": rss,
        "load_s": load_s,
        "index_loaded": index_loaded,
        "rebuild_load_s": rebuild_s,
        "query_p50_ms": 1000 * float(np.percentile(lat_pf, 50)),
        "query_p99_ms": 1000 * float(np.percentile(lat_pf, 99)),
        "exact_p50_ms": 1000 * float(np.percentile(lat_exact, 50)),
        "n_queries": n_queries,
        "fell_back": fell_back,
    }


def report(r: dict[str, Any]) -> str:
    rebuild = r.get("rebuild_load_s")
    return print_table(
        f"Largest bank: N={r['n']:,} × d={r['d']} {r['dtype']}, {r['prefilter']} prefilter "
        f"(nlist {r['index'].get('nlist')}, trained at N={r['index'].get('trained_at'):,}); "
        f"queries: a stored memory + noise of L2 norm {r.get('query_noise_l2', '?')}, "
        f"β = {r.get('beta', '?')}",
        ["build s", "close (save index) s", "store on disk GB", "index on disk GB",
         "bank in memory GB", "RSS growth GB", "start-up (saved index) s",
         "start-up (index rebuilt) s", "query p50 ms", "query p99 ms", "fell back to exact",
         "exact dense p50 ms"],
        [[r["build_s"], r["close_s"], r["disk_bytes"] / 1e9, r["index_disk_bytes"] / 1e9,
          r["bank_memory_bytes"] / 1e9, r["process_rss_growth_mib"] / 1024, r["load_s"],
          "-" if rebuild is None else rebuild, r["query_p50_ms"], r["query_p99_ms"],
          f"{r['fell_back']}/{r['n_queries']}", r["exact_p50_ms"]]],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10⁵")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--tmp", type=Path, default=None, help="where to build the store")
    parser.add_argument(
        "--rebuild", action="store_true", help="also time a start-up that rebuilds the index"
    )
    args = parser.parse_args(argv)
    n = args.n or (100_000 if args.quick else 10_000_000)
    res = run(n, args.d, 20 if args.quick else 200, args.seed, args.tmp, args.rebuild)
    res["markdown"] = report(res)
    write_json("scale_quick" if args.quick else "scale", res, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
