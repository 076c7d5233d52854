"""A writer-preferring reader/writer lock: queries share a bank, a write excludes them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LockBusy(RuntimeError):
    """`read(blocking=False)` would have waited for a writer."""


class RWLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self, *, blocking: bool = True) -> Iterator[None]:
        """Shared access; with `blocking=False`, LockBusy instead of waiting for a writer."""
        with self._cond:
            # Waiting writers go first so a stream of queries cannot starve a store.
            while self._writer or self._waiting_writers:
                if not blocking:
                    raise LockBusy("a write holds or awaits the lock")
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
