"""When to try a bank's prefilter: from how often its certificate held lately.

A query whose certificate fails (ε > tolerance) is answered by the dense pass after the
candidate search, so on a bank where it nearly always fails (real text embeddings at
β = 20: 2 000 of 2 000 in the peer benchmark) the prefilter makes every query slower than
no prefilter at all. `CertificateRate` keeps a running fallback rate per index; above
`SKIP_ABOVE` the query goes straight to the dense pass, except one batch in `PROBE_EVERY`
that still tries the index, so a bank whose queries change (another β, other cues)
notices when the certificate holds again. Answers never change: a skipped query is the
exact one a fallback would have returned. Only speed depends on this state, so races
between readers are harmless; a lock keeps the counts consistent anyway.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

# Rows observed before the rate is trusted (a fresh bank always tries its index).
MIN_ROWS = 32
# Fallback rate above which queries skip the index: past about half, the searches of the
# failed queries cost more than the certified ones save (peer benchmark, text, every query
# failing: p50 17.8 ms with the index against 13.6 ms without; random, every query
# certified: 4.0 ms against 13.9 ms).
SKIP_ABOVE = 0.5
# While skipping, one batch in this many still tries the index (≈ 6 % extra search cost).
PROBE_EVERY = 16
# Weight of the newest row in the running rate: the last ~64 rows dominate.
RATE_WEIGHT = 1 / 64


class CertificateRate:
    """Running fallback rate of one prefilter index (rows, not batches)."""

    def __init__(self) -> None:
        self.rows = 0
        self.rate = 0.0
        self.skipped = 0  # batches sent to the dense pass since the last probe
        self._lock = threading.Lock()

    def tries(self) -> bool:
        """Whether the index is being tried at all now (`should_try` without its probe count)."""
        return self.rows < MIN_ROWS or self.rate <= SKIP_ABOVE

    def should_try(self) -> bool:
        with self._lock:
            if self.tries():
                return True
            self.skipped += 1
            if self.skipped >= PROBE_EVERY:
                self.skipped = 0
                return True
            return False

    def observe(self, tried: int, fell_back: int) -> None:
        """A batch of `tried` rows went through the index; `fell_back` of them failed."""
        if tried <= 0:
            return
        with self._lock:
            if self.rows + tried <= 1 / RATE_WEIGHT:
                # Too few rows for the running weight: their plain mean (unbiased).
                self.rate = (self.rate * self.rows + fell_back) / (self.rows + tried)
            else:
                # (1 - w)^tried decay of the old rate, the batch's own rate for the rest.
                keep = (1.0 - RATE_WEIGHT) ** tried
                self.rate = keep * self.rate + (1.0 - keep) * (fell_back / tried)
            self.rows += tried


_RATES: weakref.WeakKeyDictionary[Any, CertificateRate] = weakref.WeakKeyDictionary()
_RATES_LOCK = threading.Lock()


def rate_of(index: Any) -> CertificateRate | None:
    """The running rate of `index` (made on first use), or None if it cannot be tracked
    (not weakly referenceable): that index is then always tried."""
    with _RATES_LOCK:
        try:
            rate = _RATES.get(index)
            if rate is None:
                rate = _RATES[index] = CertificateRate()
        except TypeError:
            return None
        return rate
