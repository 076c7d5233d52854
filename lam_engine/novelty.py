"""Novelty-gated store (API.md, "Novelty-gated store"): which memories of a batch to keep.

`gate` runs inside `Engine.upsert`, under the bank's writer lock, so "the bank as it is
before this batch" is exactly the bank the batch lands on: no other write comes between
the judgment and the commit. The rule and its running log-sum-exp are `math.novelty`.

What is judged is the memory as stored (normalized and rounded to the bank's dtype, as
`MemoryBank.prepare` made it), with Model B at the bank's β whatever the bank's model,
without constants (the plain E of /energy). Cost: one pass of the batch over Ξ (the bank's
own `model_b_pass`, so its per-row bias — tombstones, and any row a bias hides — never
counts), then the batch against its own accepted rows in blocks: O(NB + B²).

Request rows, not unique ids, are judged: a vector sent twice without ids is judged twice
(the second as a near-duplicate of the first, if the first was stored). A replacement of an
id already in the bank is judged against the bank with its old version in it (it usually
comes out as its own near-duplicate, i.e. skipped, unless it moved far from the old one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .bank import MemoryBank, PreparedBatch
from .errors import InvalidParameterError
from .kernels import model_b_pass
from .math.novelty import BANK, Running, add_logits, judge_in_order
from .results import Skipped
from .slot import BankSlot
from .vectors import require_finite

# float64 logits per (row, accepted row) pair that one block of the batch holds at once.
_LOGIT_BYTES = 8


def check_tau(value: Any) -> float:
    """τ of `if_novel`: a finite real number (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameterError("if_novel must be a finite number", {"if_novel": value})
    try:
        tau = float(value)  # an int beyond the float range overflows
    except OverflowError:
        tau = math.inf
    if not math.isfinite(tau):
        raise InvalidParameterError("if_novel must be a finite number", {"if_novel": str(value)})
    return tau


def gate(
    slot: BankSlot,
    batch: PreparedBatch,
    payloads: Sequence[dict[str, Any] | None] | None,
    if_novel: Any,
    chunk_bytes: int,
) -> tuple[PreparedBatch, list[Skipped] | None]:
    """The part of `batch` to store, and what was skipped (None when `if_novel` is None).

    The caller holds `slot.writer`; `payloads` are the request's, one per row (validated
    by `prepare`). Changes nothing.
    """
    if if_novel is None:
        return batch, None
    tau = check_tau(if_novel)
    x = _request_rows(batch)  # (B, d)
    with slot.lock.read():
        accepted, energy, ref, top_rows = judge(slot.bank, x, tau, chunk_bytes)
        skipped = [
            Skipped(r, batch.ids[r], float(energy[r]), _nearest(slot.bank, batch, r, ref, top_rows))
            for r in np.flatnonzero(~accepted).tolist()
        ]
    return (batch if accepted.all() else _subset(batch, x, payloads, accepted)), skipped


def _nearest(
    bank: MemoryBank, batch: PreparedBatch, r: int, ref: np.ndarray, top_rows: np.ndarray
) -> str:
    """Id of the largest weight at skipped row r: the bank's top row or an earlier row."""
    if ref[r] == BANK:
        return bank.id_at(int(top_rows[r]))
    # A skipped row has a finite E, so some memory had a finite logit: ref is never NONE.
    if ref[r] < 0:
        raise RuntimeError(f"novelty: skipped row {r} has no nearest memory")
    return batch.ids[int(ref[r])]


def judge(
    bank: MemoryBank, x: np.ndarray, tau: float, chunk_bytes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Judge request rows x (B, d), as stored, in order against `bank`.

    Returns accepted (B,) bool, energy (B,) float64 (E_i when judged), ref (B,) int64 (the
    source of the largest weight: `BANK`, or an earlier batch row) and the bank's top row
    per request row (B,) int64 (−1 where the bank has none).
    """
    beta = float(bank.config.beta)
    b = x.shape[0]
    v = torch.from_numpy(x).to(device=bank.device, dtype=torch.float32)  # (B, d)
    lse = np.full(b, -np.inf)
    best = np.full(b, -np.inf)
    top_rows = np.full(b, -1, dtype=np.int64)
    if bank.count:
        res = model_b_pass(
            bank.xi, v, beta, bias=bank.bias, top_k=1, chunk_bytes=chunk_bytes, need_out=False
        )
        lse = res.lse.double().cpu().numpy()
        top_rows = res.top_rows[:, 0].cpu().numpy().astype(np.int64)
        best = beta * res.top_scores[:, 0].double().cpu().numpy()  # (B,) its logit
        if bank.bias is not None:  # per-row biases are part of the weight
            row_bias = bank.bias.double().cpu().numpy()
            best = best + np.where(top_rows >= 0, row_bias[np.maximum(top_rows, 0)], 0.0)
        best = np.where((top_rows >= 0) & np.isfinite(lse), best, -np.inf)
    accepted, energy, ref = judge_rows(v, lse, best, beta, tau, chunk_bytes)
    return accepted, energy, ref, top_rows


def judge_rows(
    v: torch.Tensor, lse: np.ndarray, best: np.ndarray, beta: float, tau: float, chunk_bytes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Judge request rows v (B, d), in order, given the bank's part of each row's softmax:
    lse (B,) = log Σ_μ s_μ e^{β ξ_μ·v} and best (B,) its largest logit (−inf: no memory).
    The sharded router gives these from its merged pass (lam_cluster/novelty.py).
    Returns accepted, energy and ref, as `judge`."""
    x = v.cpu().numpy()
    b = x.shape[0]
    run = Running.from_bank(lse, best)
    half_sq = 0.5 * (x.astype(np.float64) ** 2).sum(axis=1)  # (B,) ½‖x‖², as /energy
    accepted = np.zeros(b, dtype=bool)
    energy = np.empty(b, dtype=np.float64)
    step = int(max(64, min(b, chunk_bytes // (_LOGIT_BYTES * b))))
    for start in range(0, b, step):
        stop = min(b, start + step)
        rows = slice(start, stop)
        earlier = np.flatnonzero(accepted[:start])
        if len(earlier):  # the batch's accepted rows before this block: one (C, A) GEMM
            idx = torch.from_numpy(earlier).to(v.device)
            add_logits(run, rows, _logits(v[rows], v.index_select(0, idx), beta), earlier)
        within = _logits(v[rows], v[rows], beta)  # (C, C)
        accepted[rows], energy[rows] = judge_in_order(run, start, half_sq[rows], within, beta, tau)
    # A skipped row has E ≤ τ; JSON cannot carry a NaN or −inf one (an overflowing β·h).
    require_finite(energy[~accepted], beta=beta)
    return accepted, energy, run.ref


def _logits(a: torch.Tensor, b: torch.Tensor, beta: float) -> np.ndarray:
    """β a·bᵀ (R, M) in float32 on the bank's device (as its pass), then float64."""
    return (torch.mm(a, b.T) * beta).double().cpu().numpy()


def _request_rows(batch: PreparedBatch) -> np.ndarray:
    """(B, d): the stored vector of every request row (a repeated content id repeats it)."""
    if len(batch.unique_ids) == len(batch.ids):
        return batch.vectors
    pos = {mid: j for j, mid in enumerate(batch.unique_ids)}
    return np.ascontiguousarray(batch.vectors[[pos[mid] for mid in batch.ids]])


def _subset(
    batch: PreparedBatch,
    x: np.ndarray,
    payloads: Sequence[dict[str, Any] | None] | None,
    keep: np.ndarray,
) -> PreparedBatch:
    """The accepted request rows as a batch, merged as `prepare` merges (last one wins)."""
    rows = np.flatnonzero(keep).tolist()
    last = {batch.ids[r]: r for r in rows}
    order = sorted(last.values())
    unique_ids = [batch.ids[r] for r in order]
    # Strengths and lifetimes are per unique id of the whole batch: pick the kept ones.
    pos = {mid: j for j, mid in enumerate(batch.unique_ids)}
    at = np.asarray([pos[mid] for mid in unique_ids], dtype=np.int64)
    return PreparedBatch(
        ids=[batch.ids[r] for r in rows],
        unique_ids=unique_ids,
        vectors=np.ascontiguousarray(x[order]),
        payloads=[None if payloads is None else payloads[r] for r in order],
        strengths=None if batch.strengths is None else batch.strengths[at],
        expires=None if batch.expires is None else batch.expires[at],
        stored_at=batch.stored_at,
    )
