"""The engine's clock: what "now" is for lifetimes and fading strengths.

Lifetimes (`expires_at`) and half-lives compare unix seconds (float64) with now. The
engine reads the time only through a `Clock`, so tests inject a `ManualClock` and move it
by hand: expiry and decay are then exact and instant, with no sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds (float64)."""


class SystemClock:
    """The wall clock (time.time)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests, examples)."""

    def __init__(self, start: float = 1.8e9) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._t += float(seconds)
            return self._t

    def set(self, t: float) -> None:
        with self._lock:
            self._t = float(t)


SYSTEM_CLOCK = SystemClock()


def rfc3339(t: float | None) -> str | None:
    """Unix seconds as the store's timestamp text: UTC, milliseconds, "Z" (None: None)."""
    if t is None:
        return None
    stamp = dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp with a zone ("Z" or ±hh:mm); ValueError else."""
    if not isinstance(text, str) or not 10 < len(text) <= 40 or text[10] not in "Tt ":
        raise ValueError("not an RFC 3339 timestamp")
    stamp = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    if stamp.tzinfo is None:
        raise ValueError("an RFC 3339 timestamp needs a time zone (Z or ±hh:mm)")
    return stamp.timestamp()
