"""Query orchestration for one bank: parameters, dense or prefiltered Model B, A/C, matches."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import check_beta_value
from .errors import InvalidParameterError
from .math.bound import missed_mass_bound
from .results import Match, QueryBatchResult, QueryResult
from .retrieval import (
    QueryParams,
    Retrieval,
    merge_rows,
    prepare_cue,
    retrieve_ac,
    retrieve_b_dense,
    retrieve_b_prefiltered,
)
from .vectors import as_mask, require_finite

if TYPE_CHECKING:
    from .engine import BankSlot

MAX_STEPS = 10_000
MAX_TOP_K = 100_000


def check_beta(beta: Any, default: float) -> float:
    if beta is None:
        return default
    return check_beta_value(beta)


def check_params(bank_beta: float, beta: Any, steps: Any, tol: Any, top_k: Any) -> QueryParams:
    b = check_beta(beta, bank_beta)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InvalidParameterError(
            f"steps must be an integer in [1, {MAX_STEPS}]", {"steps": steps}
        )
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float))
        or not math.isfinite(tol)
        or tol < 0
    ):
        raise InvalidParameterError("tol must be a finite number ≥ 0", {"tol": tol})
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
        raise InvalidParameterError(
            f"top_k must be an integer in [0, {MAX_TOP_K}]", {"top_k": top_k}
        )
    return QueryParams(beta=b, steps=steps, tol=float(tol), top_k=top_k)


def run_query(
    slot: BankSlot,
    queries: np.ndarray,
    *,
    mask: Any = None,
    beta: Any = None,
    steps: Any = 1,
    tol: Any = 1e-6,
    top_k: Any = 5,
    with_payload: bool = True,
    with_vectors: bool = False,
    exact: bool = False,
    chunk_bytes: int,
) -> QueryBatchResult:
    """Retrieve for a (B, d) batch; caller holds the bank's read lock."""
    bank = slot.bank
    params = check_params(bank.config.beta, beta, steps, tol, top_k)
    mask_np = as_mask(mask, queries.shape[0], bank.config.dim)
    cue = prepare_cue(bank, queries, mask_np)
    known = None if mask_np is None else torch.from_numpy(mask_np).to(bank.device)
    if bank.config.model != "B":
        raw = retrieve_ac(bank, cue, known, params)
    else:
        raw = _retrieve_b(slot, cue, known, params, exact=bool(exact), chunk_bytes=chunk_bytes)
    found = raw.top_rows >= 0
    require_finite(
        raw.states.cpu().numpy(),
        raw.energy,
        raw.top_weights[found],
        raw.top_scores[found],
        beta=params.beta,
    )
    return _to_results(slot, raw, with_payload=with_payload, with_vectors=with_vectors)


def _retrieve_b(
    slot: BankSlot,
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
    *,
    exact: bool,
    chunk_bytes: int,
) -> Retrieval:
    bank, pf = slot.bank, slot.prefilter
    cfg = bank.config.prefilter
    use_index = pf is not None and not exact and bank.count >= cfg.min_size and cfg.k <= bank.count
    if not use_index:
        return retrieve_b_dense(bank, cue, known, params, chunk_bytes)
    assert pf is not None
    raw = retrieve_b_prefiltered(bank, cue, known, params, pf, cfg.k, missed_mass_bound)
    assert raw.missed is not None
    # The certificate failed (or the index is approximate and unsure): answer exactly.
    fallback = np.nonzero(raw.missed > cfg.tolerance)[0]
    if len(fallback):
        sub = known[fallback] if known is not None else None
        exact_raw = retrieve_b_dense(bank, cue[fallback], sub, params, chunk_bytes)
        raw = merge_rows(raw, exact_raw, fallback)
    return raw


def _to_results(
    slot: BankSlot, raw: Retrieval, *, with_payload: bool, with_vectors: bool
) -> QueryBatchResult:
    bank = slot.bank
    results = []
    states = raw.states.cpu().numpy()
    for i in range(states.shape[0]):
        matches = []
        for r, w, s in zip(raw.top_rows[i], raw.top_weights[i], raw.top_scores[i], strict=True):
            if r < 0:
                continue
            matches.append(
                Match(
                    id=bank.id_at(int(r)),
                    weight=float(w),
                    score=float(s),
                    payload=bank.payload_at(int(r)) if with_payload else None,
                    vector=bank.vector_at(int(r)) if with_vectors else None,
                    with_payload=with_payload,
                )
            )
        missed = None
        pre = False
        if raw.missed is not None and raw.prefiltered is not None:
            pre = bool(raw.prefiltered[i])
            missed = float(raw.missed[i]) if pre else 0.0
        results.append(
            QueryResult(
                state=states[i],
                steps=int(raw.steps[i]),
                converged=bool(raw.converged[i]),
                energy=float(raw.energy[i]),
                matches=matches,
                missed_mass_bound=missed,
                prefiltered=pre,
            )
        )
    any_pre = raw.prefiltered is not None and bool(raw.prefiltered.any())
    return QueryBatchResult(results=results, prefiltered=any_pre)
