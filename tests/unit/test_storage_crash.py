"""Crash consistency: SIGKILL a writer at random moments, reopen, check every ack.

A child stores batches in a loop and prints each batch number once ``upsert`` has
returned. The parent kills it 20-300 ms after it is ready, reopens the store and
checks that every acknowledged batch is present and complete (ids, exact vectors,
payloads) and that no batch is partial. The data directory is reused across the
trials of a group, so later trials kill a writer of a bigger store; batches found
in one trial must still be there in the next.

LAM_CRASH_TRIALS raises the number of trials (default 50).
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from lam_engine.storage import Storage

CHILD = Path(__file__).with_name("crash_child_storage.py")
DIM = 8
TRIALS_PER_STORE = 10  # a fresh store every 10 trials keeps the reload checks cheap
PRESTART = 3

_spec = importlib.util.spec_from_file_location("crash_child_storage", CHILD)
assert _spec is not None and _spec.loader is not None
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)


class Writer:
    """One child writer: started ahead of time (start-up overlaps the previous check)."""

    def __init__(self, db: Path, seed: int, first_batch: int) -> None:
        args = ["crash", str(db), str(seed), str(first_batch), str(DIM)]
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.watchdog = threading.Timer(60.0, self.proc.kill)
        self.watchdog.start()

    def run_and_kill(self, delay: float) -> list[int]:
        """Let it write, SIGKILL it `delay` s later; return the acknowledged batches."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            ready = proc.stdout.readline()
            assert ready == "ready\n", f"child failed to start: {ready!r} {proc.stderr.read()!r}"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            threading.Event().wait(delay)
            proc.send_signal(signal.SIGKILL)
            out = proc.stdout.read()  # every ack printed before the kill, up to EOF
            assert proc.wait() == -signal.SIGKILL, f"child exited early: {proc.stderr.read()!r}"
        finally:
            self.close()
        # A line cut by the kill has no newline: only complete lines are acknowledgements.
        return [int(line) for line in out.split("\n")[:-1]]

    def close(self) -> None:
        self.watchdog.cancel()
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _present_batches(db: Path, seed: int, cache: dict[int, tuple]) -> tuple[set[int], int]:
    """Batches fully present in the store; counts (and fails on) partial ones."""
    store = Storage(db)
    try:
        loaded = store.load(child.CRASH_BANK)
    finally:
        store.close()
    rows: dict[int, list[int]] = defaultdict(list)
    for row, id_ in enumerate(loaded.ids):
        rows[int(id_[1:].split("-")[0])].append(row)
    partial = 0
    for batch, idx in rows.items():
        if batch not in cache:
            cache[batch] = child.batch_memories(seed, batch, DIM)
        ids, xi, payloads = cache[batch]
        got_ids = [loaded.ids[r] for r in idx]
        if got_ids != ids:
            partial += 1
            continue
        got = loaded.vectors[idx]  # (n, d)
        assert got.tobytes() == xi.astype("<f4").tobytes(), f"batch {batch} vectors differ"
        assert [loaded.payloads[r] for r in idx] == payloads
        assert np.all(np.diff(loaded.seqs[idx]) > 0)
    return set(rows), partial


def test_sigkill_never_loses_an_acknowledged_batch_nor_leaves_a_partial_one(tmp_path: Path):
    trials = int(os.environ.get("LAM_CRASH_TRIALS", "50"))
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    acked_total = lost = partial = 0
    cache: dict[int, tuple] = {}
    found: set[int] = set()

    def store_of(trial: int) -> Path:
        return tmp_path / f"store{trial // TRIALS_PER_STORE}" / "lam.sqlite3"

    # Writers start AHEAD (they only read the store until told to go): their start-up
    # overlaps the previous trials, so the test time is mostly the kill delays.
    ahead: deque[Writer] = deque()
    try:
        for trial in range(trials):
            while len(ahead) < PRESTART and trial + len(ahead) < trials:
                nxt = trial + len(ahead)
                ahead.append(Writer(store_of(nxt), seed, first_batch=nxt * 100_000))
            db = store_of(trial)
            if trial % TRIALS_PER_STORE == 0:
                found, cache = set(), {}
            acks = ahead.popleft().run_and_kill(delay=rnd.uniform(0.02, 0.3))
            present, n_partial = _present_batches(db, seed, cache)
            acked_total += len(acks)
            lost += len(set(acks) - present) + len(found - present)
            partial += n_partial
            found = present
    finally:
        for writer in ahead:
            writer.close()
    print(f"trials={trials}, acknowledged_batches={acked_total}, lost={lost}, partial={partial}")
    assert (lost, partial) == (0, 0), f"seed={seed}"
    # Kills must land mid-stream for the test to mean anything: most trials acknowledge.
    assert acked_total >= trials // 2
