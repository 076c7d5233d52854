"""Crash safety of the service: SIGKILL under store load, restart, every acknowledged batch there.

The default run does DEFAULT_TRIALS trials (each is a server restart, seconds of imports);
the `slow` one (make test-slow) does SLOW_TRIALS. LAM_CRASH_TRIALS overrides both;
scripts/crash_trials.py runs more.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.reliability.rel_crash import run_crash_trials
from tests.reliability.rel_harness import ServerFactory, figure, sqlite_check

DEFAULT_TRIALS = 6
SLOW_TRIALS = 30


def check_crash_trials(make_server: ServerFactory, trials: int) -> None:
    trials = int(os.environ.get("LAM_CRASH_TRIALS", str(trials)))
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


def test_sigkill_under_load_loses_no_acknowledged_batch(make_server: ServerFactory) -> None:
    check_crash_trials(make_server, DEFAULT_TRIALS)


@pytest.mark.slow
def test_sigkill_under_load_many_trials(make_server: ServerFactory) -> None:
    """The same check over more random kill moments (30 trials: minutes)."""
    check_crash_trials(make_server, SLOW_TRIALS)
