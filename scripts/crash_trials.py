"""Crash trials against a real `python -m service`: SIGKILL under store load, restart, audit.

    python -m scripts.crash_trials --trials 100 [--seed 1] [--writers 3] [--synchronous FULL]

Prints one FIGURE line (trials, acknowledged batches, lost, partial, corrupt) and exits 1
if any acknowledged batch was lost or any batch was partial or corrupt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.rel_crash import run_crash_trials
from tests.reliability.rel_harness import LamServer, figure, sqlite_check


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    ap.add_argument("--keep", action="store_true", help="keep the data dir and server log")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lam-crash-"))
    server = LamServer(
        data_dir=root / "data",
        log_path=root / "server.log",
        env={"LAM_SYNCHRONOUS": args.synchronous},
    )
    t0 = time.perf_counter()
    server.start()
    try:
        report = run_crash_trials(
            server, args.trials, seed=args.seed, writers=args.writers, progress=print
        )
    finally:
        server.stop()
    report.line()
    integrity, _ = sqlite_check(server.data_dir)
    figure("crash_trials_runtime", seconds=time.perf_counter() - t0, integrity=integrity)
    for failure in report.failures:
        print("FAIL", failure)
    print(f"data dir and log: {root}" if args.keep else "", end="")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    ok = not report.failures and report.lost == report.partial == report.corrupt == 0
    return 0 if ok and integrity == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
