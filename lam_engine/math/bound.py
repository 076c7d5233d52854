"""The prefilter's certificate: how much softmax mass the memories left out can hold."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError, NonFiniteError

# Relative slack on W_out (see missed_mass_bound): ≫ float32's 6e-8, ≪ any tolerance.
_W_SLACK = 2**-20


def missed_mass_bound(
    cand_scores: np.ndarray,
    n_total: int,
    beta: float,
    cand_bias: np.ndarray | None = None,
    total_prior: float | None = None,
) -> np.ndarray:
    """Upper bound ε on the softmax mass of the memories outside each row's candidates.

    cand_scores: (B, k) inner products ξ·v of the candidates, -inf where a row has fewer
    than k (FAISS -1 padding). With s_k the smallest valid score of a row and k its number
    of valid candidates, every left-out memory scores at most s_k when the candidates are
    the true top-k, so its softmax mass is at most
        ε = (N−k)·e^{β s_k} / (Σ_{i∈C} e^{β s_i} + (N−k)·e^{β s_k})
    (x / (A + x) grows with x). Computed in float64 log space: β·s can reach ~1e3.
    ε = 0 when k = N; a row with no valid candidate of a non-empty bank has ε = 1.

    With strengths (log-priors b_μ, `cand_bias` (B, k) for the candidates and
    `total_prior` = Σ_μ e^{b_μ} over all N memories): every left-out memory still scores at
    most s_k, so the left-out mass Σ_{μ∉C} e^{b_μ + β h_μ} ≤ e^{β s_k} · W_out with
    W_out = Σ_{μ∉C} e^{b_μ} = total_prior − Σ_{i∈C} e^{b_i}, and
        ε = W_out e^{β s_k} / (Σ_{i∈C} e^{b_i + β s_i} + W_out e^{β s_k}),
    which is the bound above when every b = 0 (W_out = N − k). W_out is formed in float64
    and raised by _W_SLACK·total_prior, more than the float32 rounding of the candidates'
    biases (≤ 2⁻²⁴ relative per term) plus a float64 sum's: the bound stays a true bound.
    Returns (B,) float64.
    """
    scores = np.asarray(cand_scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InvalidInputError("cand_scores must be (B, k)", {"shape": list(scores.shape)})
    if cand_bias is None and 0 < scores.shape[1] < n_total and np.isfinite(scores).all():
        return _full_rows_bound(scores, int(n_total), beta)
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise NonFiniteError("cand_scores must be finite or -inf")
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise InvalidParameterError("beta must be finite and > 0", {"beta": beta})
    valid = np.isfinite(scores)  # (B, k)
    k_row = valid.sum(axis=1)  # (B,)
    missing = np.maximum(int(n_total) - k_row, 0).astype(np.float64)  # (B,) N − k
    eps = np.zeros(scores.shape[0], dtype=np.float64)
    has_cand = k_row > 0
    eps[~has_cand & (missing > 0)] = 1.0
    rows = has_cand & (missing > 0)
    if not rows.any():
        return eps
    z = beta * scores[rows]  # (R, k), -inf on padding
    z_k = np.min(np.where(valid[rows], z, np.inf), axis=1)  # (R,) β s_k
    if cand_bias is None or total_prior is None:
        log_w = np.log(missing[rows])  # (R,) log (N − k)
    else:
        b = np.where(valid[rows], np.asarray(cand_bias, dtype=np.float64)[rows], -np.inf)
        w_out = total_prior - np.exp(b).sum(axis=1) + _W_SLACK * total_prior  # (R,)
        with np.errstate(divide="ignore"):
            log_w = np.log(np.maximum(w_out, 0.0))
        z = z + np.where(valid[rows], b, 0.0)  # the candidates' logits β s_i + b_i
    log_out = log_w + z_k  # (R,) log of W_out·e^{β s_k}
    shift = np.maximum(np.max(z, axis=1), log_out)  # (R,)
    in_sum = np.exp(z - shift[:, None]).sum(axis=1)  # (R,) padding contributes e^{-inf} = 0
    out_term = np.exp(log_out - shift)  # (R,)
    eps[rows] = out_term / (in_sum + out_term)
    return eps


def _full_rows_bound(scores: np.ndarray, n_total: int, beta: float) -> np.ndarray:
    """`missed_mass_bound` where every row has k < N valid candidates and no bias: the same
    float64 operations on the same values, without the masks. The common case (every query
    of a prefiltered bank without strengths), and a query's cost here is mostly the
    number of numpy calls, each run from caches that the index scan has just emptied."""
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise InvalidParameterError("beta must be finite and > 0", {"beta": beta})
    z = beta * np.ascontiguousarray(scores)  # (B, k), C order as the masked path's copy
    missing = np.full(scores.shape[0], n_total - scores.shape[1], dtype=np.float64)  # (B,)
    log_out = np.log(missing) + np.min(z, axis=1)  # (B,) log of (N − k)·e^{β s_k}
    shift = np.maximum(np.max(z, axis=1), log_out)  # (B,)
    in_sum = np.exp(z - shift[:, None]).sum(axis=1)  # (B,)
    out_term = np.exp(log_out - shift)  # (B,)
    return out_term / (in_sum + out_term)


def log_tail(cand_scores: np.ndarray, n_total: int, beta: float) -> np.ndarray:
    """log of the left-out term (N−k)·e^{β s_k} of `missed_mass_bound`, per row (float64).

    A part of Ξ (a shard) certifies its own left-out memories with it; the parts' terms add,
    so the merged bound is `merged_bound`. −inf when k = N (nothing left out), +inf for a row
    with no valid candidate of a non-empty part (nothing is known: ε = 1).
    """
    scores = np.asarray(cand_scores, dtype=np.float64)  # (B, k)
    valid = np.isfinite(scores)
    k_row = valid.sum(axis=1)  # (B,)
    missing = np.maximum(int(n_total) - k_row, 0)  # (B,) N − k
    out = np.full(scores.shape[0], -np.inf)
    out[(k_row == 0) & (missing > 0)] = np.inf
    rows = (k_row > 0) & (missing > 0)
    if rows.any():
        z_k = np.min(np.where(valid[rows], float(beta) * scores[rows], np.inf), axis=1)
        out[rows] = np.log(missing[rows].astype(np.float64)) + z_k
    return out


def merged_bound(lse: np.ndarray, log_tails: np.ndarray) -> np.ndarray:
    """ε of the union of parts: T / (e^{lse} + T), T = Σ_s e^{log_tail_s}.

    lse (B,) is log Σ e^{β s} over every part's candidates (the merged log-sum-exp), and
    log_tails (S, B) the parts' `log_tail`. Each part's left-out memories score at most its
    own s_k, so T bounds the mass of all of them together: ε stays a true bound after the
    merge, and for one part it is `missed_mass_bound`. Returns (B,) float64.
    """
    tails = np.asarray(log_tails, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_t = np.logaddexp.reduce(tails, axis=0) if tails.shape[0] else np.full(len(lse), -np.inf)
        diff = np.asarray(lse, dtype=np.float64) - log_t  # (B,)
        eps = 1.0 / (1.0 + np.exp(diff))
    eps = np.where(np.isneginf(log_t), 0.0, eps)
    return np.where(np.isposinf(log_t), 1.0, eps)
