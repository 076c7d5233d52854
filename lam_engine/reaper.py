"""The background reaper: deletes expired memories through the durable delete path.

A memory is invisible to every read from the instant it expires (selection.visible); this
thread then deletes it for good (store and memory), waking at the next expiry the banks
report (at most `REAP_MAX_WAIT_S` apart, so a clock moved by hand is noticed too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .config import REAP_MAX_WAIT_S, REAP_MIN_WAIT_S

log = logging.getLogger("lam.engine")


class Reaper:
    def __init__(self, reap: Callable[[], float], now: Callable[[], float]) -> None:
        """`reap()` deletes what has expired and returns the next expiry (unix s, inf)."""
        self._reap, self._now = reap, now
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lam-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                next_at = self._reap()
            except Exception:  # a failed delete (disk full) is retried at the next wake
                log.exception("reaping expired memories failed")
                next_at = self._now() + REAP_MAX_WAIT_S
            wait = min(max(next_at - self._now(), REAP_MIN_WAIT_S), REAP_MAX_WAIT_S)
            self._wake.wait(wait)
            self._wake.clear()

    def wake(self) -> None:
        """A write with an earlier expiry: look again now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
