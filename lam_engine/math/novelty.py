"""Novelty-gated writes: the in-order rule of API.md ("Novelty-gated store").

Memory i of a batch x_1..x_B is stored when its Model B energy (no constants) under the
bank Ξ plus the members of the batch accepted before it,

    E_i = ½‖x_i‖² − β⁻¹ log( Σ_μ e^{β ξ_μ·x_i + b_μ} + Σ_{j<i, j accepted} e^{β x_j·x_i} ),

is above τ (b_μ: the bank's per-row bias, −inf for a hidden row). An empty sum is a log
of 0: E = +inf, so the first memory of an empty bank is always stored.

The bank's part is one pass (B × N scores); what the batch adds is kept per row as a
running log-sum-exp `lse` and the largest logit seen with its source (`best`, `ref`), so
the in-order decision costs O(B²) on top, never B passes. These functions work in float64
on numpy arrays, in place on the running state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BANK = -1  # ref: the bank's top row gave the largest logit
NONE = -2  # ref: nothing to compare with (empty support)


@dataclass
class Running:
    """Per batch row: log-sum-exp of the logits seen so far and the largest one."""

    lse: np.ndarray  # (B,) float64, −inf for an empty support
    best: np.ndarray  # (B,) float64: the largest logit seen (−inf: none)
    ref: np.ndarray  # (B,) int64: its source: BANK, a batch row j ≥ 0, or NONE

    @classmethod
    def from_bank(cls, lse: np.ndarray, best: np.ndarray) -> Running:
        """Start from the bank's pass: its log-sum-exp and its top row's logit per row."""
        lse = np.asarray(lse, dtype=np.float64).copy()
        best = np.asarray(best, dtype=np.float64).copy()
        ref = np.where(np.isfinite(best), BANK, NONE).astype(np.int64)
        return cls(lse=lse, best=np.where(ref == BANK, best, -np.inf), ref=ref)


def add_logits(run: Running, rows: slice, logits: np.ndarray, sources: np.ndarray) -> None:
    """Fold logits (R, M) of rows `rows` against M earlier memories (`sources`: their batch
    rows) into the running state: the exact log-sum-exp merge, and the argmax."""
    if logits.shape[1] == 0:
        return
    m = logits.max(axis=1)  # (R,) finite: logits of finite vectors
    lse_new = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    run.lse[rows] = np.logaddexp(run.lse[rows], lse_new)
    arg = logits.argmax(axis=1)
    better = m > run.best[rows]
    run.best[rows] = np.where(better, m, run.best[rows])
    run.ref[rows] = np.where(better, sources[arg], run.ref[rows])


def judge_in_order(
    run: Running,
    start: int,
    half_sq: np.ndarray,
    logits: np.ndarray,
    beta: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Decide rows start..start+C−1 in order, given their logits among themselves (C, C).

    `run` must already hold, for these rows, the bank and every accepted row before
    `start`. Returns (accepted (C,) bool, energy (C,) float64: E_i when row i was judged).
    Each acceptance folds its column into the rows after it: O(C) per accepted row.
    """
    c = logits.shape[0]
    accepted = np.zeros(c, dtype=bool)
    energy = np.empty(c, dtype=np.float64)
    lse, best, ref = run.lse, run.best, run.ref
    for i in range(c):
        g = start + i
        e = half_sq[i] - lse[g] / beta  # +inf for an empty support
        energy[i] = e
        if not e > tau:
            continue
        accepted[i] = True
        if i + 1 == c:
            break
        col = logits[i + 1 :, i]  # (C−i−1,) logits of row i for the rows after it
        rest = slice(g + 1, start + c)
        lse[rest] = np.logaddexp(lse[rest], col)
        better = col > best[rest]
        best[rest] = np.where(better, col, best[rest])
        ref[rest] = np.where(better, g, ref[rest])
    return accepted, energy
