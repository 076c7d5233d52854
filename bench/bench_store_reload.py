"""Store and reload benchmark of lam_engine.storage (SQLite, WAL).

Stores N memories of dimension d in batches (one transaction each) with
synchronous FULL and NORMAL, reopens the FULL store and times ``load``, and reports
the file size. Writes bench/results/store_reload.json.

    python bench/bench_store_reload.py            # N = 10⁶, d = 128
    python bench/bench_store_reload.py --quick    # N = 10⁵
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lam_engine.storage import Storage  # noqa: E402

BANK = "bench"


def _file_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def store(db: Path, n: int, d: int, batch: int, synchronous: str) -> dict[str, Any]:
    """Time only the upsert calls: vector generation stays outside the clock.

    CPU seconds are reported next to wall seconds: on a shared machine the wall clock
    also counts the time other processes held the cores.
    """
    rng = np.random.default_rng(0)
    s = Storage(db, synchronous=synchronous)
    s.create_bank(BANK, {"dim": d}, "2025-01-01T00:00:00Z")
    spent = cpu = 0.0
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        xi = rng.standard_normal((hi - lo, d), dtype=np.float32)  # (b, d)
        ids = [f"m{i}" for i in range(lo, hi)]
        payloads = [{"i": i} for i in range(lo, hi)]
        t, c = time.perf_counter(), time.process_time()
        s.upsert(BANK, ids, xi, payloads)
        spent += time.perf_counter() - t
        cpu += time.process_time() - c
    s.close()
    return {
        "seconds": round(spent, 3),
        "cpu_seconds": round(cpu, 3),
        "vectors_per_s": round(n / spent),
    }


def reload(db: Path, n: int, d: int) -> dict[str, Any]:
    t, c = time.perf_counter(), time.process_time()
    s = Storage(db)
    loaded = s.load(BANK)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    s.close()
    assert loaded.vectors.shape == (n, d) and len(loaded.ids) == n
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "vectors_per_s": round(n / seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="N = 10⁵")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: tmp)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = ap.parse_args()
    if args.out is None:  # quick runs must not overwrite the full-size numbers the docs cite
        name = "store_reload_quick.json" if args.quick else "store_reload.json"
        args.out = REPO / "bench" / "results" / name
    n = 100_000 if args.quick else args.n

    scratch = Path(tempfile.mkdtemp(prefix="lam-bench-", dir=args.dir))
    try:
        result: dict[str, Any] = {
            "n": n,
            "d": args.d,
            "batch": args.batch,
            "payload": '{"i": <int>}',
            "store": {},
        }
        for mode in ("FULL", "NORMAL"):
            db = scratch / mode / "lam.sqlite3"
            result["store"][mode] = store(db, n, args.d, args.batch, mode)
            r = result["store"][mode]
            rate, cpu = r["vectors_per_s"], r["cpu_seconds"]
            print(f"store  {mode:6s}: {rate:>10,} vectors/s ({cpu:.1f} s CPU)")
        db = scratch / "FULL" / "lam.sqlite3"
        result["load"] = reload(db, n, args.d)
        result["file_bytes"] = _file_bytes(db)
        result["bytes_per_memory"] = round(result["file_bytes"] / n, 1)
        result["raw_vector_bytes_per_memory"] = 4 * args.d
        load = result["load"]
        secs, cpu = load["seconds"], load["cpu_seconds"]
        print(f"load         : {secs:.2f} s, {cpu:.2f} s CPU ({n:,} × {args.d})")
        print(f"file size    : {result['file_bytes'] / 2**20:,.1f} MiB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["env"] = {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
