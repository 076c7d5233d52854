"""Per-row strengths and lifetimes of a bank, kept row for row with `MemoryBank`.

float64 numpy arrays beside the device tensor: the strength s_μ, when the memory was
stored and last reinforced (t_μ is the later of the two), when it expires (inf: never),
and the log-prior bias relative to a reference time (math/strengths.py), of which the bank
keeps a float32 copy on its device for the kernels. Times are unix seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .math import strengths as sm

# Each array and the value of a row not in use.
_FILLS = (
    ("strength", 1.0),
    ("stored_at", 0.0),
    ("reinforced_at", np.nan),
    ("expires_at", np.inf),
    ("log_prior", 0.0),
)


class RowPriors:
    """Strengths, times and the log-prior of a bank's rows (module docstring)."""

    def __init__(self, capacity: int, half_life_s: float | None) -> None:
        self.half_life_s = half_life_s
        self.strength = np.ones(capacity)
        self.stored_at = np.zeros(capacity)
        self.reinforced_at = np.full(capacity, np.nan)
        self.expires_at = np.full(capacity, np.inf)
        self.log_prior = np.zeros(capacity)  # log s_μ − c (t_ref − t_μ), float64
        self.t_ref = 0.0  # reference time of log_prior (set by the first write)
        self._unit = True  # every row in use has s = 1 (then, without decay, no bias)
        self.next_expiry = math.inf  # earliest expires_at of a live row (a lower bound)
        self._mass: float | None = None  # log Σ e^{log_prior} over the live rows (log_mass)

    # ---- layout (the bank calls these as its rows move) ----------------------------------
    def reserve(self, capacity: int, n: int) -> None:
        """Grow to `capacity` rows, keeping the first n."""
        self._move(np.arange(n), capacity)

    def remap(self, alive: np.ndarray, capacity: int) -> None:
        """Keep rows `alive` (in order) at the front, as the bank compacts."""
        self._move(alive, capacity)
        self.recheck(len(alive))

    def _move(self, rows: np.ndarray, capacity: int) -> None:
        self._mass = None
        for name, fill in _FILLS:
            new = np.full(capacity, fill)
            new[: len(rows)] = getattr(self, name)[rows]
            setattr(self, name, new)

    def clear(self, rows: np.ndarray | list[int], n: int) -> None:
        """Tombstoned rows: back to the neutral values (their strength 1 keeps `_unit` a
        sound lower bound; the next expiry is looked up again, O(N) numpy)."""
        self._mass = None
        self.strength[rows] = 1.0
        self.expires_at[rows] = np.inf
        self.log_prior[rows] = 0.0
        self.next_expiry = float(self.expires_at[:n].min()) if n else math.inf

    def recheck(self, n: int) -> None:
        self._unit = bool((self.strength[:n] == 1.0).all())
        exp = self.expires_at[:n]
        self.next_expiry = float(exp.min()) if n else math.inf

    # ---- writes ---------------------------------------------------------------------------
    def set_rows(
        self,
        rows: np.ndarray,
        strength: np.ndarray,
        stored_at: np.ndarray,
        reinforced_at: np.ndarray,
        expires_at: np.ndarray,
    ) -> bool:
        """Write rows; True when every row's bias must be recomputed (`refresh`)."""
        self._mass = None
        self.strength[rows] = strength
        self.stored_at[rows] = stored_at
        self.reinforced_at[rows] = reinforced_at
        self.expires_at[rows] = expires_at
        if len(rows):
            self.next_expiry = min(self.next_expiry, float(np.min(expires_at)))
        was_unit = self._unit
        self._unit = self._unit and bool((np.asarray(strength) == 1.0).all())
        t_mu = self.t_mu(rows)
        rebase = self.half_life_s is not None and (
            self.t_ref == 0.0
            or float(t_mu.max(initial=self.t_ref) - self.t_ref) * sm.decay_rate(self.half_life_s)
            > sm.REBASE_AT
        )
        if rebase:
            self.t_ref = float(t_mu.max(initial=self.t_ref))
            return True
        self.log_prior[rows] = sm.log_prior(self.strength[rows], t_mu, self.t_ref, self.half_life_s)
        return was_unit and not self._unit

    def refresh(self, n: int) -> None:
        """Recompute every row's log-prior (after a rebase or a new half-life)."""
        rows = np.arange(n)
        self._mass = None
        self.log_prior[:n] = sm.log_prior(
            self.strength[:n], self.t_mu(rows), self.t_ref, self.half_life_s
        )

    def set_half_life(self, half_life_s: float | None, n: int, now: float) -> None:
        self.half_life_s = half_life_s
        self.t_ref = now
        self.refresh(n)

    # ---- reads ----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the kernels need the bias at all (False: today's Model B, bit for bit)."""
        return not self._unit or self.half_life_s is not None

    def log_mass(self, alive: Callable[[], np.ndarray]) -> float:
        """log Σ e^{log_prior} over the rows `alive()` returns, cached until the next write:
        the bias is constant in time (math/strengths.py), so a query that needs E's constant
        or the prefilter's bound (retrieval.py) costs no O(N) pass; the caller adds the
        offset of the moment."""
        if self._mass is None:
            self._mass = sm.log_mass(self.log_prior[alive()], 0.0)
        return self._mass

    def t_mu(self, rows: np.ndarray) -> np.ndarray:
        r = self.reinforced_at[rows]
        return np.where(np.isnan(r), self.stored_at[rows], r)

    def offset(self, t: float) -> float:
        """The common part of log s_μ(t) (added to log Σ in the energy)."""
        return sm.prior_offset(t, self.t_ref, self.half_life_s) if self.half_life_s else 0.0

    def fields(self, row: int, t: float) -> dict[str, Any]:
        """The row's strength, strength in force at t, and times (API.md, "Forgetting")."""
        reinforced = float(self.reinforced_at[row])
        expires = float(self.expires_at[row])
        return {
            "strength": float(self.strength[row]),
            "strength_now": self.strength_now(row, t),
            "stored_at": float(self.stored_at[row]),
            "reinforced_at": None if math.isnan(reinforced) else reinforced,
            "expires_at": None if math.isinf(expires) else expires,
        }

    def strength_now(self, row: int, t: float) -> float:
        rows = np.asarray([row])
        return float(sm.strength_now(self.strength[rows], self.t_mu(rows), t, self.half_life_s)[0])


def gathered(parts: list[RowPriors], shard: np.ndarray, rows: np.ndarray) -> RowPriors:
    """The priors of rows taken from several `RowPriors` (row i: parts[shard[i]], rows[i]),
    which share one half-life and one reference time (a sharded bank aligns them)."""
    out = RowPriors(max(1, len(rows)), parts[0].half_life_s)
    out.t_ref = parts[0].t_ref
    for name, _ in _FILLS:
        dst = getattr(out, name)
        for s, part in enumerate(parts):
            mine = np.flatnonzero(shard == s)
            dst[mine] = getattr(part, name)[rows[mine]]
    out.recheck(len(rows))
    return out
