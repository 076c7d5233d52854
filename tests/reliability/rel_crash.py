"""Crash trials against a real server: store over HTTP, SIGKILL at a random moment, restart, audit.

Each trial writes into its own bank (created, and acknowledged, before the load starts) from
several writer threads; batch sizes vary from 1 to a few hundred memories so that kills land
before, inside and after SQLite commits. After the restart the trial's bank is scrolled and
every batch classified: an acknowledged batch (HTTP 200 received) must be complete, and no
batch, acknowledged or not, may be partial or differ from what was sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.reliability.rel_harness import LamServer, audit_batches, batch_body, figure, scroll_all

DIM = 16
SIZES = (1, 2, 3, 5, 8, 13, 21, 34, 64, 200)  # memories per batch; one transaction each


@dataclass
class CrashReport:
    trials: int = 0
    acknowledged: int = 0  # batches that got a 200
    acknowledged_memories: int = 0
    lost: int = 0  # acknowledged but not complete after the restart
    partial: int = 0  # any batch with some but not all of its memories
    corrupt: int = 0  # a vector or payload differing from what was sent
    unacked_committed: int = 0  # in flight at the kill, found complete (allowed)
    unacked_absent: int = 0  # in flight at the kill, found absent (allowed)
    restart_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        mean = sum(self.restart_seconds) / max(1, len(self.restart_seconds))
        return figure(
            "crash_trials",
            trials=self.trials,
            acknowledged_batches=self.acknowledged,
            acknowledged_memories=self.acknowledged_memories,
            lost=self.lost,
            partial=self.partial,
            corrupt=self.corrupt,
            inflight_committed=self.unacked_committed,
            inflight_absent=self.unacked_absent,
            restart_mean_s=mean,
        )


def _writer(
    url: str, bank: str, tag: str, stop: threading.Event, acked: set[str], tried: set[str]
) -> None:
    rng = random.Random(tag)
    n = 0
    with httpx.Client(base_url=url, timeout=30.0) as client:
        while not stop.is_set():
            prefix = f"{tag}n{n}k{rng.choice(SIZES)}"
            n += 1
            tried.add(prefix)
            try:
                r = client.post(f"/v1/banks/{bank}/memories", json=batch_body(prefix, DIM))
            except httpx.HTTPError:
                return  # the server is gone: whatever was in flight is unacknowledged
            if r.status_code == 200:
                acked.add(prefix)
            elif r.status_code != 503:
                raise AssertionError(f"store answered {r.status_code}: {r.text[:300]}")


def run_trial(
    server: LamServer, trial: int, rng: random.Random, report: CrashReport, writers: int = 3
) -> None:
    bank = f"crash{trial}"
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        r = client.post("/v1/banks", json={"name": bank, "dim": DIM, "beta": 1.0})
        assert r.status_code in (200, 201), r.text
    stop = threading.Event()
    acked: set[str] = set()
    tried: set[str] = set()
    threads = [
        threading.Thread(
            target=_writer, args=(server.url, bank, f"t{trial}w{w}", stop, acked, tried)
        )
        for w in range(writers)
    ]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.05, 0.8))  # the random moment of the crash
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "writer hung after the kill"
    report.restart_seconds.append(server.start())
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        audit = audit_batches(scroll_all(client, bank), DIM)
        count = client.get(f"/v1/banks/{bank}").json()["count"]
    lost = acked - audit.complete
    report.trials += 1
    report.acknowledged += len(acked)
    report.acknowledged_memories += sum(int(p.rpartition("k")[2]) for p in acked)
    report.lost += len(lost)
    report.partial += len(audit.partial)
    report.corrupt += len(audit.corrupt)
    report.unacked_committed += len((tried - acked) & audit.complete)
    report.unacked_absent += len((tried - acked) - audit.complete - set(audit.partial))
    if lost or audit.partial or audit.corrupt or count != audit.total:
        report.failures.append(
            f"trial {trial}: lost={sorted(lost)[:5]} partial={sorted(audit.partial.items())[:5]}"
            f" corrupt={sorted(audit.corrupt)[:5]} count={count} scrolled={audit.total}"
        )
    unknown = set(audit.complete) - tried
    if unknown:
        report.failures.append(f"trial {trial}: batches never sent appeared: {sorted(unknown)[:5]}")


def final_audit(server: LamServer, report: CrashReport) -> None:
    """Re-read every trial's bank after the last restart: later restarts damaged nothing."""
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        for trial in range(report.trials):
            audit = audit_batches(scroll_all(client, f"crash{trial}"), DIM)
            if audit.partial or audit.corrupt:
                report.failures.append(f"final audit of trial {trial}: {audit}")


def run_crash_trials(
    server: LamServer,
    trials: int,
    seed: int = 0,
    writers: int = 3,
    progress: Callable[[str], None] | None = None,
) -> CrashReport:
    """`server` must be started; it is running again (after the last restart) on return."""
    rng = random.Random(seed)
    report = CrashReport()
    for trial in range(trials):
        run_trial(server, trial, rng, report, writers)
        if progress:
            progress(
                f"trial {trial + 1}/{trials}: acked={report.acknowledged} lost={report.lost}"
                f" partial={report.partial} restart={report.restart_seconds[-1]:.2f}s"
            )
    final_audit(server, report)
    return report
