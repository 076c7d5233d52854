"""Checkpoints off the writer's path: the WAL is copied into the database by a thread of
its own, on a connection of its own, while writes go on.

In WAL mode every committed page is written twice: appended to the WAL (fsync'ed at commit:
that is durability) and later copied into the database file by a checkpoint (and the file
fsync'ed). SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
so one batch in every few paid for all of them: 64 MiB copied and fsync'ed, ≈ 200 ms, on a
5 000 × 384 upload every eighth batch. Here the writer only counts what it wrote; past the
threshold, or `PERIOD_S` after a write, this thread runs a PASSIVE checkpoint (it never
blocks a writer: SQLite copies the frames committed so far while new ones are appended),
then a short second one while it holds the store's lock, so that between two transactions
every frame is in the database and the next write starts the WAL over. The count is a
lower bound (the vectors' bytes; a write also rewrites the pages of the indexes it
touches: a third more at 200 000 rows of d = 384, several times more at d = 64): the
period bounds what it misses.

The writer's own automatic checkpoint stays on, at `SAFETY_FACTOR` times the threshold:
should this thread fall behind (or die), commits checkpoint as SQLite always does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import AbstractContextManager
from typing import Any

from .schema import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

SAFETY_FACTOR = 4  # the writer's autocheckpoint, in thresholds
PERIOD_S = 1.0  # a pass at least this soon after a write
IDLE_PERIODS = 30  # the thread (and its connection) ends after this long without writes


class Checkpointer:
    """Copies the WAL of the store at `target` into it once `threshold` bytes were written.

    `hold` is the store's lock (a context manager): taken for the second, short pass only,
    so that no transaction begins until every committed frame is backfilled.
    """

    def __init__(
        self,
        target: str,
        synchronous: str,
        threshold: int,
        hold: AbstractContextManager[Any],
    ) -> None:
        self._target = target
        self._synchronous = synchronous
        self._threshold = threshold
        self._hold = hold
        # Bytes written since the last pass began; the two threads race on it harmlessly (a
        # lost count delays a pass to the period at most).
        self._pending = 0
        self._wake = threading.Event()
        self._stopping = False
        self._mutex = threading.Lock()  # the thread's start and its idle end, one at a time
        self._thread: threading.Thread | None = None
        self.passes = 0  # checkpoints run (tests, diagnostics)

    def wrote(self, nbytes: int) -> None:
        """The writer committed at least `nbytes` to the WAL (called under the store's lock)."""
        with self._mutex:
            if self._stopping:
                return
            self._pending += nbytes
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="lam-checkpoint", daemon=True
                )
                self._thread.start()
        if self._pending >= self._threshold:
            self._wake.set()

    def stop(self) -> None:
        """Finish the pass in progress and end the thread (before the store closes)."""
        with self._mutex:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._target, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # The checkpoint's own fsyncs follow the store's mode (FULL or NORMAL).
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            idle = 0
            while True:
                self._wake.wait(PERIOD_S)
                self._wake.clear()
                if self._stopping:
                    return
                if not self._pending:
                    idle += 1
                    with self._mutex:
                        if idle >= IDLE_PERIODS and not self._pending:
                            self._thread = None  # the next write starts another
                            return
                    continue
                idle = 0
                self._pending = 0  # a write from here on counts for the next pass
                try:
                    self._checkpoint(conn)
                except sqlite3.Error as exc:  # a full disk, say: the next pass tries again
                    log.warning("background checkpoint failed: %s", exc)
        except Exception:  # the writer's own autocheckpoint takes over (module docstring)
            log.warning("background checkpoints stopped", exc_info=True)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        # The long pass, beside the writer: the frames committed so far.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # The short one, between transactions: what was committed meanwhile (a transaction
        # under way during the first pass is not in it). Then every frame is backfilled and
        # the next write begins the WAL anew; without it the file would grow for as long
        # as writes keep coming.
        with self._hold:
            if not self._stopping:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passes += 1
