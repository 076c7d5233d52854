"""Background checkpoints (store/checkpoint.py): the WAL is backfilled off the writer's
path, starts over after a pass, and the store reads the same before and after a reopen."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from lam_engine.store import Storage
from lam_engine.store import checkpoint as checkpoint_module
from lam_engine.store import connection as connection_module

T0 = "2025-11-25T14:00:00Z"
D = 64
THRESHOLD = 1 << 20  # 1 MiB: a handful of batches of 1 000 × 64 float32


@pytest.fixture
def small_threshold(monkeypatch) -> None:
    monkeypatch.setattr(connection_module, "WAL_CHECKPOINT_BYTES", THRESHOLD)


def _xi(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D), dtype=np.float32)


def _wal_state(db: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already in the database), asked of another connection."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        _, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames, done
    finally:
        conn.close()


def _wait_for(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_writes_past_the_threshold_are_checkpointed_by_the_thread(
    tmp_path: Path, small_threshold: None
) -> None:
    db = tmp_path / "lam.sqlite3"
    s = Storage(db, synchronous="FULL")
    ckpt = s._checkpointer
    assert ckpt is not None
    s.create_bank("b", {"dim": D}, T0)
    s.upsert("b", [f"m{i}" for i in range(100)], _xi(100, 0), [None] * 100)
    assert ckpt.passes == 0  # below the threshold (and within the period)
    for k in range(1, 6):  # 5 × 256 KiB of vectors: past 1 MiB
        s.upsert("b", [f"k{k}-{i}" for i in range(1000)], _xi(1000, k), [None] * 1000)
    _wait_for(lambda: ckpt.passes >= 1)
    # The second pass ran between transactions: every frame committed so far is backfilled,
    # and the SQLite autocheckpoint (4 MiB here) had no part in it.
    frames, done = _wal_state(db)
    assert frames == done > 0
    s.upsert("b", ["after"], _xi(1, 9), [None])  # begins the WAL anew
    after, _ = _wal_state(db)
    assert 0 < after < frames
    assert len(s.load("b").ids) == 100 + 5000 + 1
    thread = ckpt._thread
    s.close()
    assert thread is not None and not thread.is_alive()  # close ended it


def test_a_long_upload_keeps_the_wal_short(tmp_path: Path, small_threshold: None) -> None:
    """Without the short pass under the lock the WAL would not start over while writes keep
    coming, and only SQLite's own autocheckpoint (1 000 pages, 16 MiB here) would end it;
    with it the file goes back to its size limit (2 thresholds) after every pass."""
    db = tmp_path / "lam.sqlite3"
    wal = db.with_name(db.name + "-wal")
    s = Storage(db, synchronous="FULL")
    s.create_bank("b", {"dim": D}, T0)
    sizes = []
    for k in range(60):  # 60 × 256 KiB of vectors, 60 × ≈ 1 MiB written to the WAL
        s.upsert("b", [f"k{k}-{i}" for i in range(1000)], _xi(1000, k), [None] * 1000)
        sizes.append(wal.stat().st_size)
    starts_over = sum(b < a for a, b in itertools.pairwise(sizes))
    assert s._checkpointer is not None and s._checkpointer.passes >= 3
    assert starts_over >= 3, sizes
    assert max(sizes) < 12 << 20, sizes
    want = np.concatenate([_xi(1000, k) for k in range(60)])
    s.close()
    reopened = Storage(db)
    np.testing.assert_array_equal(reopened.load("b").vectors, want)
    reopened.close()


def test_a_write_is_checkpointed_within_the_period(tmp_path: Path) -> None:
    """Far below the threshold, a pass still follows a write within PERIOD_S."""
    db = tmp_path / "lam.sqlite3"
    s = Storage(db)
    s.create_bank("b", {"dim": D}, T0)
    s.upsert("b", ["one"], _xi(1, 0), [None])
    assert s._checkpointer is not None
    _wait_for(lambda: s._checkpointer.passes >= 1, timeout=10 * checkpoint_module.PERIOD_S)
    frames, done = _wal_state(db)
    assert frames == done
    s.close()


def test_in_memory_and_read_only_stores_have_no_checkpointer(tmp_path: Path, monkeypatch) -> None:
    assert Storage(":memory:")._checkpointer is None
    db = tmp_path / "lam.sqlite3"
    Storage(db).close()
    # A file the process may not write (root ignores file modes, so say so to the check).
    monkeypatch.setattr(connection_module.os, "access", lambda *args: False)
    ro = Storage(db)
    assert ro.read_only and ro._checkpointer is None
    ro.close()


def test_an_idle_thread_ends_and_the_next_write_starts_another(tmp_path: Path, monkeypatch) -> None:
    """A store left open (and unused) does not keep a thread and a connection for good."""
    monkeypatch.setattr(checkpoint_module, "PERIOD_S", 0.01)
    s = Storage(tmp_path / "lam.sqlite3")
    s.create_bank("b", {"dim": D}, T0)
    ckpt = s._checkpointer
    assert ckpt is not None
    first = ckpt._thread
    assert first is not None
    _wait_for(lambda: not first.is_alive())  # a pass, then IDLE_PERIODS of nothing
    assert ckpt._thread is None and ckpt.passes == 1
    s.upsert("b", ["one"], _xi(1, 0), [None])
    assert ckpt._thread is not None and ckpt._thread is not first
    _wait_for(lambda: ckpt.passes == 2)
    s.close()
