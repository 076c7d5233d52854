"""The descent loop over any pass: Model B dense (chunked) or prefiltered, Models A and C.

Returns row indices and raw tensors; `ops` turns rows into ids and payloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from .bank import MemoryBank
from .config import QUERY, hidden_function
from .kernels import DEFAULT_CHUNK_BYTES, candidate_pass, gather_rows, model_b_pass
from .math import lagrangians, models
from .math.bound import missed_mass_bound
from .vectors import normalize_rows


class CandidateIndex(Protocol):
    """What retrieval and ops need of a bank's prefilter index (one per prefilter kind)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    def exact_topk(self) -> bool: ...


@dataclass
class Retrieval:
    """Per-query raw results; rows index the bank's rows."""

    states: torch.Tensor  # (B, d) float32
    steps: np.ndarray  # (B,) int
    converged: np.ndarray  # (B,) bool
    energy: np.ndarray  # (B,) float64
    top_rows: np.ndarray  # (B, k) int64, -1 = none
    top_weights: np.ndarray  # (B, k)
    top_scores: np.ndarray  # (B, k)
    missed: np.ndarray | None = None  # (B,) certified bound ε; None when exact
    prefiltered: np.ndarray | None = None  # (B,) bool: answered from candidates


@dataclass
class QueryParams:
    """The descent's parameters, β resolved (the bank's unless the query set one)."""

    beta: float
    steps: int = QUERY.steps
    tol: float = QUERY.tol
    top_k: int = QUERY.top_k


def hidden_f(bank: MemoryBank) -> lagrangians.HiddenFunction:
    """The hidden function F of a Model A or C bank (API.md defaults)."""
    return lagrangians.hidden_function(*hidden_function(dict(bank.config.model_params)))


def prepare_cue(bank: MemoryBank, queries: np.ndarray, mask: np.ndarray | None) -> torch.Tensor:
    """Zero the unknown features, then normalize if the bank normalizes (API.md order).

    `queries` are validated (QueryInput) and never written: each step makes a new array.
    """
    x = queries if mask is None else np.where(mask, queries, np.float32(0.0))
    if bank.config.normalize:
        x = normalize_rows(x, allow_zero=True)
    return torch.from_numpy(x).to(bank.device)


def _clamp(v: torch.Tensor, cue: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
    return v if known is None else torch.where(known, cue, v)


def _descend(
    v0: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
    one_pass: Any,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, Any]:
    """Generic loop: v_{t+1} = clamp(out(v_t)) until ‖Δv‖ ≤ tol or `steps` updates.

    `one_pass(v, last)` returns an object with `.out`; `last` marks the pass at the returned
    state, which is also returned (the caller reads energy and matches from it, never its
    `.out`, so that pass may skip computing it).
    """
    b = v0.shape[0]
    v = v0
    steps = np.zeros(b, dtype=np.int64)
    converged = np.zeros(b, dtype=bool)
    res = one_pass(v, params.steps == 0)
    for t in range(1, params.steps + 1):
        active = torch.from_numpy(~converged).to(v.device)
        v_new = _clamp(res.out.to(v.dtype), v0, known)
        delta = (v_new - v).norm(dim=1).cpu().numpy()
        v = torch.where(active[:, None], v_new, v)
        steps[~converged] += 1
        converged |= delta <= params.tol
        last = t == params.steps or bool(converged.all())
        res = one_pass(v, last)
        if last:
            break
    return v, steps, converged, res


def retrieve_b_dense(
    bank: MemoryBank,
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Retrieval:
    xi, bias, beta = bank.xi, bank.bias, params.beta
    k = min(params.top_k, bank.count)

    def one_pass(v: torch.Tensor, last: bool) -> Any:
        # The last pass (at the returned state) yields the energy and the matches: it needs
        # the log-sum-exp and the top-k, not Ξᵀ p, so its second GEMM is skipped.
        return model_b_pass(
            xi,
            v,
            beta,
            bias=bias,
            top_k=k if last else 0,
            chunk_bytes=chunk_bytes,
            need_out=not last,
        )

    v, steps, converged, res = _descend(cue, known, params, one_pass)
    # The log-priors' common part (math/strengths.py) cancels in p but not in E.
    lse = res.lse.double() + bank.bias_offset()
    energy = 0.5 * (v.double() ** 2).sum(dim=1) - lse / beta
    logit = beta * res.top_scores
    if bias is not None:  # weights of the matches: p_μ ∝ s_μ exp(β h_μ)
        logit = logit + torch.where(res.top_rows >= 0, bias[res.top_rows.clamp_min(0)], 0)
    weights = torch.exp(logit - res.lse[:, None])
    return Retrieval(
        states=v.float(),
        steps=steps,
        converged=converged,
        energy=energy.cpu().numpy(),
        top_rows=res.top_rows.cpu().numpy(),
        top_weights=weights.cpu().numpy(),
        top_scores=res.top_scores.cpu().numpy(),
    )


@dataclass
class _CandPass:
    out: torch.Tensor | None  # (B, d) Ξᵀ p over the candidates; None at the last pass
    h: np.ndarray  # (B, k) float32 ξ·v of the candidates, -inf at padding
    rows: np.ndarray  # (B, k) int64, -1 at padding
    logit: np.ndarray | None = None  # (B, k) float64 β h + b, the last pass's only
    lse: np.ndarray | None = None  # (B,) float64 log Σ_{i∈C} e^{logit_i}, the last pass's only


def retrieve_b_prefiltered(
    bank: MemoryBank,
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
    index: CandidateIndex,
    k_candidates: int,
) -> Retrieval:
    """Model B over FAISS candidates; ε is the largest bound seen along the descent.

    Every pass searches the index at its state. A pass that updates the state gathers the
    candidates' rows for Ξᵀ p; the pass at the returned state needs only their scores, and
    those are the index's own (every prefilter kind keeps the bank's vectors exactly as
    stored, widened to float32, and scores by float32 inner product: `Prefilter.search`),
    so it gathers nothing. A `steps: 0` query is then one index search and O(k) numpy.
    """
    xi, beta, bias = bank.xi, params.beta, bank.bias
    n = bank.count
    k = min(k_candidates, n)
    eps = np.zeros(cue.shape[0])
    # Σ_μ e^{b_μ} over the bank, in the units of `bias` (the bound's W, math/bound.py).
    # Tombstones alone (bias 0 / -inf) keep the plain bound (W_out = N − k).
    prior = bias is not None and bank.has_prior
    total_prior = math.exp(bank.log_mass() - bank.bias_offset()) if prior else None

    def one_pass(v: torch.Tensor, last: bool) -> _CandPass:
        # The state as the memories' dtype holds it, as the dense passes take it
        # (kernels/dispatch.py): a half bank's scores then agree across the two paths, and
        # `/energy` of the returned state with the query's energy (API.md).
        v_np = np.ascontiguousarray(v.to(xi.dtype).float().cpu().numpy())
        scores, keys = index.search(v_np, k)
        rows = bank.rows_for_keys(keys)  # (B, k), -1: padding or a key gone
        valid = rows >= 0
        rows_t = None  # the rows on the bank's device, for a gather
        if bias is not None or not last:
            rows_t = torch.from_numpy(np.maximum(rows, 0)).to(xi.device)
        bias_c = None  # (B, k) the candidates' log-priors, 0 at padding
        if bias is not None:
            bias_c = np.where(valid, bias[rows_t].cpu().numpy(), np.float32(0.0))
        if last:
            h = np.where(valid, scores, np.float32(-np.inf))
            logit = np.float64(beta) * h.astype(np.float64)
            if bias_c is not None:
                logit = logit + bias_c
            lse = np.logaddexp.reduce(logit, axis=1)
            res = _CandPass(out=None, h=h, rows=rows, logit=logit, lse=lse)
        else:
            assert rows_t is not None
            xi_c = gather_rows(xi, rows_t)  # (B, k, d)
            bias_t = None if bias_c is None else torch.from_numpy(bias_c).to(xi.device)
            out, _, h_t = candidate_pass(
                xi_c, v, beta, torch.from_numpy(valid).to(xi.device), bias_t
            )
            res = _CandPass(out=out, h=h_t.cpu().numpy(), rows=rows)
        bound = missed_mass_bound(res.h, n, beta, bias_c if prior else None, total_prior)
        eps[:] = np.maximum(eps, bound)
        return res

    v, steps, converged, res = _descend(cue, known, params, one_pass)
    assert res.logit is not None and res.lse is not None  # the returned state's pass is last
    v64 = v.float().cpu().numpy().astype(np.float64)  # numpy's cast: no torch op
    energy = 0.5 * (v64**2).sum(axis=1) - (res.lse + bank.bias_offset()) / beta
    kk = min(params.top_k, k)
    idx = np.argsort(-res.logit, axis=1, kind="stable")[:, :kk]  # by weight
    # Plain fancy indexing: np.take_along_axis builds the same index in ~10 calls a use.
    at = (np.arange(idx.shape[0])[:, None], idx)
    top_logit = res.logit[at]
    top_h = res.h[at]
    top_rows = np.where(np.isfinite(top_h), res.rows[at], -1)
    with np.errstate(invalid="ignore"):
        weights = np.where(top_rows >= 0, np.exp(top_logit - res.lse[:, None]), 0.0)
    return Retrieval(
        states=v.float(),
        steps=steps,
        converged=converged,
        energy=energy,
        top_rows=top_rows,
        top_weights=weights.astype(np.float32),
        top_scores=top_h,
        missed=eps,
        prefiltered=np.ones(cue.shape[0], dtype=bool),
    )


def merge_rows(base: Retrieval, other: Retrieval, rows: np.ndarray) -> Retrieval:
    """`base` with the queries at `rows` replaced by `other`'s (same batch order)."""
    k = max(base.top_rows.shape[1], other.top_rows.shape[1])

    def pad(a: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((a.shape[0], k), fill, dtype=a.dtype)
        out[:, : a.shape[1]] = a
        return out

    states = base.states.clone()
    states[torch.from_numpy(rows).to(states.device)] = other.states
    merged = Retrieval(
        states=states,
        steps=base.steps.copy(),
        converged=base.converged.copy(),
        energy=base.energy.copy(),
        top_rows=pad(base.top_rows, -1),
        top_weights=pad(base.top_weights, 0.0),
        top_scores=pad(base.top_scores, -math.inf),
        missed=None if base.missed is None else base.missed.copy(),
        prefiltered=None if base.prefiltered is None else base.prefiltered.copy(),
    )
    merged.steps[rows] = other.steps
    merged.converged[rows] = other.converged
    merged.energy[rows] = other.energy
    merged.top_rows[rows] = pad(other.top_rows, -1)
    merged.top_weights[rows] = pad(other.top_weights, 0.0)
    merged.top_scores[rows] = pad(other.top_scores, -math.inf)
    if merged.prefiltered is not None:
        merged.prefiltered[rows] = False
    return merged


# ---- Models A and C ----------------------------------------------------------------------


def _f_weights(scores: torch.Tensor, kind: str, power: int) -> torch.Tensor:
    """Share of memory μ in Σ_ν |F(s_ν)| (softmax of s for F = exp), computed stably."""
    if kind == "exp":
        return torch.softmax(scores, dim=1)
    f = scores.clamp_min(0) ** power if kind == "rectified_power" else scores**power
    f = f.abs()
    total = f.sum(dim=1, keepdim=True)
    return torch.where(total > 0, f / total.clamp_min(1e-300), torch.zeros_like(f))


def retrieve_ac(
    bank: MemoryBank, cue: torch.Tensor, known: torch.Tensor | None, params: QueryParams
) -> Retrieval:
    F = hidden_f(bank)
    rows = torch.from_numpy(bank.alive_rows()).to(bank.device)
    xi = bank.alive_xi().double()  # (N, d)
    v0 = cue.double()
    if bank.config.model == "A":
        v0 = torch.where(v0 >= 0, 1.0, -1.0).to(v0)
        if known is not None:
            v0 = torch.where(known, v0, torch.zeros_like(v0))
        cue_vals = v0.clone()

        class _Pass:
            def __init__(self, v: torch.Tensor) -> None:
                out = models.model_a_sweep(xi, v, F)
                self.out = out

        def one_pass(v: torch.Tensor, want_top: bool) -> Any:
            return _Pass(v)

        v, steps, converged, _ = _descend(cue_vals, known, params, one_pass)
        v = torch.where(v >= 0, 1.0, -1.0).to(v) if known is None else v
        energy = models.model_a_energy(xi, v, F)
        g = v
    else:
        alpha = float(dict(bank.config.model_params).get("alpha", 1.0))

        class _PassC:
            def __init__(self, v: torch.Tensor) -> None:
                self.out = models.model_c_step(xi, v, F, alpha=alpha)

        v, steps, converged, _ = _descend(v0, known, params, lambda v, _t: _PassC(v))
        energy = models.model_c_energy(xi, v, F)
        g = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    scores_v = v @ xi.T  # (B, N): API's score ξ·v
    weights = _f_weights(g @ xi.T, F.kind, F.power)
    k = min(params.top_k, xi.shape[0])
    top_w, idx = torch.topk(weights, k, dim=1)
    return Retrieval(
        states=v.float(),
        steps=steps,
        converged=converged,
        energy=energy.cpu().numpy(),
        top_rows=rows[idx].cpu().numpy(),
        top_weights=top_w.cpu().numpy(),
        top_scores=torch.gather(scores_v, 1, idx).cpu().numpy(),
    )
