"""Crash consistency: SIGKILL a writer at random moments, reopen, check every ack.

A child stores batches in a loop and prints each batch number once ``upsert`` has
returned. The parent kills it 20-300 ms after it is ready, reopens the store and
checks that every acknowledged batch is present and complete (ids, exact vectors,
payloads) and that no batch is partial. The data directory is reused across the
trials of a group, so later trials kill a writer of a bigger store; batches found
in one trial must still be there in the next.

LAM_CRASH_TRIALS raises the number of trials (default 50).

The schema migration (version 2 or 3 → 4, then a VACUUM) is killed the same way: whenever
the kill lands, the next open finds every memory of the old store, exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import pytest

from lam_engine.errors import StorageError
from lam_engine.store import SCHEMA_VERSION, Storage

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


# -- a kill during the schema migration --------------------------------------------------

_V2_SCHEMA = (
    "PRAGMA page_size = 4096",
    "PRAGMA journal_mode = WAL",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE banks (name TEXT PRIMARY KEY, config TEXT NOT NULL, created_at TEXT NOT NULL,"
    " ord INTEGER NOT NULL, next_seq INTEGER NOT NULL DEFAULT 0,"
    " generation INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE memories (bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT, PRIMARY KEY (bank, seq)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX memories_bank_id ON memories (bank, id)",
    "INSERT INTO meta VALUES ('schema_version', '2'), ('generation', '7')",
)


# Version 3: a rowid table in 16 KiB pages indexed by (bank, seq) and (bank, id).
_V3_SCHEMA = (
    "PRAGMA page_size = 16384",
    *_V2_SCHEMA[1:4],  # WAL, meta, banks
    "CREATE TABLE memories (bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, payload TEXT)",
    "CREATE UNIQUE INDEX memories_bank_seq ON memories (bank, seq)",
    "CREATE UNIQUE INDEX memories_bank_id ON memories (bank, id)",
    "INSERT INTO meta VALUES ('schema_version', '3'), ('generation', '7')",
)


def _make_old_store(db: Path, n: int, d: int, version: int = 2) -> np.ndarray:
    """A version-2 or -3 store (as that code wrote it): bank "m" with n rows, every 3rd seq."""
    db.parent.mkdir(parents=True, exist_ok=True)
    xi = np.random.default_rng(3).standard_normal((n, d), dtype=np.float32)
    conn = sqlite3.connect(db, isolation_level=None)
    for stmt in _V2_SCHEMA if version == 2 else _V3_SCHEMA:
        conn.execute(stmt)
    conn.execute("INSERT INTO banks VALUES ('m', ?, 't', 0, ?, 7)", (json.dumps({"dim": d}), 3 * n))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO memories VALUES ('m', ?, ?, ?, ?)",
        ((3 * i, f"id{i}", xi[i].tobytes(), None if i % 2 else f'{{"i":{i}}}') for i in range(n)),
    )
    conn.execute("COMMIT")
    conn.close()
    return xi


@pytest.mark.parametrize("version", [2, 3])
def test_sigkill_during_migration_never_loses_the_store(tmp_path: Path, version: int):
    trials = max(4, int(os.environ.get("LAM_CRASH_TRIALS", "50")) // 6)
    n, d = 40_000, 96
    pristine = tmp_path / "pristine" / "lam.sqlite3"
    xi = _make_old_store(pristine, n, d, version)
    # How long an undisturbed migration takes here: the kills are spread over it.
    timed = tmp_path / "timed" / "lam.sqlite3"
    shutil.copytree(pristine.parent, timed.parent)
    report = _migrate_in_child(timed, None)
    assert report is not None and report["vacuum"].startswith("done")
    duration = report["seconds"]
    rnd = random.Random()
    interrupted = 0
    for trial in range(trials):
        db = tmp_path / f"t{trial}" / "lam.sqlite3"
        shutil.copytree(pristine.parent, db.parent)
        report = _migrate_in_child(db, rnd.uniform(0.0, 1.2 * duration))
        interrupted += report is None
        store = Storage(db)  # finishes (or redoes) the migration
        try:
            assert store.schema_version == SCHEMA_VERSION and store.generation("m") == 7
            loaded = store.load("m")
            assert loaded.ids == [f"id{i}" for i in range(n)]
            assert loaded.seqs.tolist() == list(range(0, 3 * n, 3))
            assert loaded.vectors is not None and loaded.vectors.tobytes() == xi.tobytes()
            assert loaded.payloads == [None if i % 2 else {"i": i} for i in range(n)]
            assert store.upsert("m", ["new"], xi[:1], [None]) == [3 * n]
            assert store.upsert("m", ["id5"], xi[:1], [None]) == [15]  # replaced by id
            with pytest.raises(StorageError):  # id6 is at seq 18: a wrong map is refused
                store.upsert("m", ["id6"], xi[:1], [None], stored={"id6": 17})
            check = store._conn.execute("PRAGMA integrity_check").fetchone()[0]
            assert check == "ok"
        finally:
            store.close()
        shutil.rmtree(db.parent)
    print(f"migration: {duration:.2f} s, trials={trials}, interrupted={interrupted}")
    assert interrupted >= 1  # the kills must land during the migration to mean anything


def _migrate_in_child(db: Path, kill_after: float | None) -> dict | None:
    """Open (migrate) `db` in a child; SIGKILL it `kill_after` s after it starts, unless None.

    Returns the child's migration report, or None if it was killed first.
    """
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "migrate", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120.0, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if kill_after is not None:
            threading.Event().wait(kill_after)
            proc.send_signal(signal.SIGKILL)
        out = proc.stdout.read()
        code = proc.wait()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if code == -signal.SIGKILL and not out.endswith("\n"):
        return None
    assert code in (0, -signal.SIGKILL), f"child failed: {code}"
    return json.loads(out)
