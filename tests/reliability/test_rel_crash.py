"""Crash safety of the service: SIGKILL under store load, restart, every acknowledged batch there.

LAM_CRASH_TRIALS (default 30) sets the number of trials; scripts/crash_trials.py runs more.
"""

from __future__ import annotations

import os
import time

from tests.reliability.rel_crash import run_crash_trials
from tests.reliability.rel_harness import ServerFactory, figure, sqlite_check


def test_sigkill_under_load_loses_no_acknowledged_batch(make_server: ServerFactory) -> None:
    trials = int(os.environ.get("LAM_CRASH_TRIALS", "30"))
    server = make_server("crash")
    t0 = time.perf_counter()
    report = run_crash_trials(server, trials, seed=int(os.environ.get("LAM_CRASH_SEED", "0")))
    report.line()
    server.stop()
    integrity, _ = sqlite_check(server.data_dir)
    figure("crash_trials_runtime", seconds=time.perf_counter() - t0, integrity=integrity)
    assert report.trials == trials
    assert report.acknowledged >= trials, "the load generator got too few batches acknowledged"
    assert report.failures == []
    assert (report.lost, report.partial, report.corrupt) == (0, 0, 0)
    assert integrity == "ok"
