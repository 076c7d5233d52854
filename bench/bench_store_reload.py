"""Store and reload benchmark of lam_engine.store (SQLite, WAL).

Stores N memories of dimension d in batches (one transaction each) with
synchronous FULL and NORMAL, then reopens the FULL store twice, each time in a fresh
process so that its peak resident memory (VmHWM) belongs to that reload alone:

- ``Storage.load``: the bank as one float32 array (ids, seqs, payloads);
- ``Engine.open`` of the same bank declared float16 (no prefilter): the path a service
  start takes, down to the device tensor.

Reports the file size, the reload times and their peak RSS next to the size of what
they produce. Writes bench/results/store_reload.json.

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lam_engine.store import Storage  # noqa: E402

BANK = "bench"


def _file_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


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


def child_reload(db: Path, how: str, n: int, d: int) -> dict[str, Any]:
    """Runs in a fresh process: one reload, timed, with the process's peak RSS."""
    if how == "engine":
        import torch  # noqa: F401  (imported before the baseline: not part of the load)

        from lam_engine.engine import Engine
    rss0 = _status_kib("VmRSS")
    t, c = time.perf_counter(), time.process_time()
    if how == "storage":
        s = Storage(db)
        loaded = s.load(BANK)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        assert loaded.vectors is not None and loaded.vectors.shape == (n, d)
        assert len(loaded.ids) == n
        result_bytes = loaded.vectors.nbytes
        s.close()
    else:
        engine = Engine.open(db.parent, default_device="cpu")
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        info = engine.bank_info(BANK)
        assert info.count == n
        result_bytes = info.memory_bytes
        engine.close()
    peak = _status_kib("VmHWM")
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "vectors_per_s": round(n / seconds),
        "rss_before_mib": round(rss0 / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "peak_rss_growth_mib": round((peak - rss0) / 1024, 1),
        "result_mib": round(result_bytes / 2**20, 1),
    }


def reload(db: Path, how: str, n: int, d: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", how, str(db), str(n), str(d)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def declare_float16(db: Path, d: int) -> None:
    """Give the stored bank an engine config: float16, no prefilter (load path only)."""
    from lam_engine.config import BankConfig, PrefilterConfig

    config = BankConfig(dim=d, dtype="float16", prefilter=PrefilterConfig(kind="none"))
    s = Storage(db)
    s.update_bank_config(BANK, config.to_dict())
    s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="memories (default 10⁶, quick 10⁵)")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="N = 10⁵")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: tmp)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results file")
    ap.add_argument("--child", nargs=4, metavar=("HOW", "DB", "N", "D"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        how, db, n_s, d_s = args.child
        print(json.dumps(child_reload(Path(db), how, int(n_s), int(d_s))))
        return
    if args.out is None:  # quick runs must not overwrite the full-size numbers the docs cite
        name = "store_reload_quick.json" if args.quick else "store_reload.json"
        args.out = REPO / "bench" / "results" / name
    n = args.n or (100_000 if args.quick else 1_000_000)

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
        shutil.rmtree(scratch / "NORMAL")
        db = scratch / "FULL" / "lam.sqlite3"
        result["file_bytes"] = _file_bytes(db)
        result["bytes_per_memory"] = round(result["file_bytes"] / n, 1)
        result["raw_vector_bytes_per_memory"] = 4 * args.d
        result["load"] = reload(db, "storage", n, args.d)
        declare_float16(db, args.d)
        result["engine_open_float16"] = reload(db, "engine", n, args.d)
        for label, key in (("Storage.load", "load"), ("Engine.open f16", "engine_open_float16")):
            r = result[key]
            print(
                f"{label:15s}: {r['seconds']:.2f} s, {r['cpu_seconds']:.2f} s CPU "
                f"({n:,} × {args.d}); peak RSS {r['peak_rss_mib']:,.0f} MiB "
                f"(+{r['peak_rss_growth_mib']:,.0f} MiB for {r['result_mib']:,.0f} MiB of vectors)"
            )
        print(f"file size      : {result['file_bytes'] / 2**20:,.1f} MiB")
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
