"""Run every benchmark: `python -m bench` (full, < 20 min) or `python -m bench --quick` (< 3 min).

Each benchmark runs in its own subprocess (a fresh heap: one benchmark's multi-GB bank
does not inflate the next one's memory numbers) and writes its JSON/PNG under
bench/results/. `--only` picks a subset; `--tiny` is the CI smoke mode (even smaller
than --quick: it checks that every script still runs, not how fast).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

# name → (script, full-mode extra args); scripts owned by others are run as files.
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "engine": ("bench_engine.py", []),
    "native": ("bench_native.py", []),
    "http": ("bench_http.py", []),
    "prefilter": ("bench_prefilter.py", []),
    # The performance issue's target is stated at d = 384 (IVF vs dense at β = 32, B = 1).
    "prefilter384": (
        "bench_prefilter.py",
        [
            "--d",
            "384",
            "--kinds",
            "flat",
            "ivf",
            "--no-sweeps",
            "--out",
            str(BENCH / "results" / "prefilter384.json"),
        ],  # the name bench.report reads
    ),
    "store_reload": ("bench_store_reload.py", []),
    "store_http": ("bench_store_http.py", []),
    # 10⁷ × 128 float16 takes longer to build than the full run's budget allows: run
    # `python -m bench.bench_scale` alone for it; the suite uses 2·10⁶.
    "scale": ("bench_scale.py", ["--n", "2000000"]),
    # A real local Ray cluster (3 nodes; 1 with --tiny); exits 0 with a note without Ray.
    "cluster": ("bench_cluster.py", []),
}
# Opt-in only (`--only peer`), never in the default suite: it installs Chroma into a venv
# of its own (bench/peer/.venv, ≈ 2 GB, once) and embeds the text workload (≈ 3 min, once).
OPT_IN: dict[str, tuple[str, list[str]]] = {"peer": ("bench_peer.py", [])}
# The first run of an opt-in benchmark also installs its venv: longer limits.
TIMEOUT_OVERRIDE_S = {"peer": {"full": 2400, "quick": 1200, "tiny": 1200}}
# What --tiny passes on top of --quick (our scripts only; others get plain --quick).
TINY = {
    "engine": ["--tiny"],
    "native": ["--tiny"],
    "http": ["--tiny"],
    "prefilter": ["--tiny"],
    "prefilter384": ["--tiny"],
    "scale": ["--n", "20000"],
    "store_http": ["--m", "2000"],
    "store_reload": ["--n", "10000", "--batch", "2000"],
    "cluster": ["--tiny"],
}
# Extra --quick arguments where the full-mode arguments name a variant.
QUICK = {"prefilter384": ["--d", "96", "--kinds", "flat", "ivf", "--no-sweeps"]}
TIMEOUT_S = {"full": 1500, "quick": 300, "tiny": 120}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 3 min")
    parser.add_argument("--tiny", action="store_true", help="CI smoke run (implies --quick)")
    parser.add_argument(
        "--only", nargs="+", choices=sorted({**BENCHMARKS, **OPT_IN}), default=None,
        help=f"a subset; opt-in only: {', '.join(OPT_IN)}",
    )  # fmt: skip
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    failed: list[str] = []
    missing: list[str] = []
    t_all = time.perf_counter()
    for name in args.only or list(BENCHMARKS):
        script, full_args = {**BENCHMARKS, **OPT_IN}[name]
        path = BENCH / script
        if not path.exists():
            missing.append(name)
            print(f"== {name}: {script} not present yet, skipped", flush=True)
            continue
        extra = (
            full_args
            if mode == "full"
            else ["--quick"] + QUICK.get(name, []) + (TINY.get(name, []) if mode == "tiny" else [])
        )
        if args.out_dir is not None:
            if name in ("engine", "http", "scale", "store_http", "peer"):
                extra += ["--out-dir", str(args.out_dir)]
            else:  # these take a file name
                suffix = "" if mode == "full" else "_quick"
                extra += ["--out", str(args.out_dir / f"{name}{suffix}.json")]
        print(f"\n== {name}: {script} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        limit = TIMEOUT_OVERRIDE_S.get(name, TIMEOUT_S)[mode]
        try:
            rc = subprocess.run(
                [sys.executable, str(path), *extra], cwd=ROOT, timeout=limit
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            print(f"== {name}: timed out after {limit} s", flush=True)
        print(f"== {name}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    print(f"\nall benchmarks: {time.perf_counter() - t_all:.0f} s; failed: {failed or 'none'}; "
          f"missing: {missing or 'none'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
