"""A cluster bank's time: the router's clock and the reference time of its log-priors.

See lam_cluster/forgetting.py for why one bank has one time; this module holds the state
that the router, its bank views and the replicas' calls share.
"""

from __future__ import annotations

import threading

from lam_engine.clock import SYSTEM_CLOCK, Clock
from lam_engine.math.strengths import REBASE_AT, decay_rate, prior_offset

Ctx = tuple[float, float | None]  # (the router's now, t_ref; None without a half-life)


class Timing:
    """A cluster bank's clock and the reference time of its log-priors."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.t_ref = 0.0  # 0: not set yet (set by the first write or read)
        self._lock = threading.Lock()

    def read(self, half_life_s: float | None, t: float | None = None) -> Ctx:
        t = self.clock.now() if t is None else t
        if half_life_s is None:
            return t, None
        with self._lock:
            if self.t_ref == 0.0:  # a router restarted: any reference, as long as it is one
                self.t_ref = t
            return t, self.t_ref

    def write(self, half_life_s: float | None, t: float) -> Ctx:
        """The context of a write at t (the caller holds the bank's write lock)."""
        if half_life_s is None:
            return t, None
        with self._lock:
            if self.t_ref == 0.0 or (t - self.t_ref) * decay_rate(half_life_s) > REBASE_AT:
                self.t_ref = t
            return t, self.t_ref

    @staticmethod
    def offset(ctx: Ctx, half_life_s: float | None) -> float:
        """−c (t − t_ref): the log-priors' common part at the request's time."""
        t, t_ref = ctx
        return 0.0 if t_ref is None else prior_offset(t, t_ref, half_life_s)
