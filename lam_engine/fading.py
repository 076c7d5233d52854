"""Strengths over time on a bank: reinforce, and the forgetting columns of a snapshot.

The arrays are `RowPriors` (priors.py: also a row's forgetting fields), the formulas
math/strengths.py; `MemoryBank` keeps the float32 bias the kernels read (`_set_priors`,
`set_half_life`). A sharded bank takes the same calls on its global view (shards/bank.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .bank import MemoryBank


def reinforce(bank: MemoryBank, rows: np.ndarray, t: float, strength: float | None) -> None:
    """Set t_μ = t (and s_μ = strength when given) for rows in use."""
    pr = bank.priors
    s = pr.strength[rows] if strength is None else np.full(len(rows), float(strength))
    bank._set_priors(rows, s, pr.stored_at[rows], np.full(len(rows), t), pr.expires_at[rows])


def rebase(bank: MemoryBank, t_ref: float) -> bool:
    """Move the reference time of the bank's log-priors to `t_ref` (every row's bias again,
    O(N)); the shards of one bank share one, so their partials merge unchanged
    (math/strengths.py). Returns whether anything moved."""
    if bank.priors.t_ref == t_ref:
        return False
    bank.priors.t_ref = t_ref
    bank.priors.refresh(bank._n)
    bank._rebias()
    return True


def snapshot_rows(
    bank: MemoryBank,
) -> tuple[list[str], np.ndarray, list[dict[str, Any] | None], dict[str, list[Any]]]:
    """ids, vectors, payloads and forgetting columns of the memories alive now (snapshot)."""
    rows = bank.alive_rows()
    expired = bank.priors.expires_at[rows] <= bank.clock.now()
    if expired.any():
        rows = rows[~expired]
    pr = bank.priors

    def col(a: np.ndarray) -> list[Any]:
        return [None if not math.isfinite(x) else x for x in a[rows].tolist()]

    times = {
        "strengths": pr.strength[rows].tolist(),
        "stored_at": pr.stored_at[rows].tolist(),
        "reinforced_at": col(pr.reinforced_at),
        "expires_at": col(pr.expires_at),
    }
    xi = bank.xi.index_select(0, torch.from_numpy(rows).to(bank.device))
    vectors = np.ascontiguousarray(xi.to(device="cpu", dtype=torch.float32).numpy())
    return (
        [bank.id_at(int(r)) for r in rows],
        vectors,
        [bank.payload_at(int(r)) for r in rows],
        times,
    )


def snapshot_times(
    times: dict[str, list[Any]] | None, n: int, now: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(strength, stored_at, reinforced_at, expires_at) arrays of a snapshot's memories;
    a snapshot made before forgetting existed: strength 1, stored now, never expiring."""
    if times is None:
        return np.ones(n), np.full(n, now), np.full(n, np.nan), np.full(n, np.inf)

    def col(key: str, null: float) -> np.ndarray:
        return np.array([null if x is None else float(x) for x in times[key]], dtype=np.float64)

    return (
        col("strengths", 1.0),
        col("stored_at", now),
        col("reinforced_at", np.nan),
        col("expires_at", np.inf),
    )
