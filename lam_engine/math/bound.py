"""The prefilter's certificate: how much softmax mass the memories left out can hold."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError, NonFiniteError


def missed_mass_bound(cand_scores: np.ndarray, n_total: int, beta: float) -> np.ndarray:
    """Upper bound ε on the softmax mass of the memories outside each row's candidates.

    cand_scores: (B, k) inner products ξ·v of the candidates, -inf where a row has fewer
    than k (FAISS -1 padding). With s_k the smallest valid score of a row and k its number
    of valid candidates, every left-out memory scores at most s_k when the candidates are
    the true top-k, so its softmax mass is at most
        ε = (N−k)·e^{β s_k} / (Σ_{i∈C} e^{β s_i} + (N−k)·e^{β s_k})
    (x / (A + x) grows with x). Computed in float64 log space: β·s can reach ~1e3.
    ε = 0 when k = N; a row with no valid candidate of a non-empty bank has ε = 1.
    Returns (B,) float64.
    """
    scores = np.asarray(cand_scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InvalidInputError("cand_scores must be (B, k)", {"shape": list(scores.shape)})
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
    log_out = np.log(missing[rows]) + z_k  # (R,) log of (N−k)·e^{β s_k}
    shift = np.maximum(np.max(z, axis=1), log_out)  # (R,)
    in_sum = np.exp(z - shift[:, None]).sum(axis=1)  # (R,) padding contributes e^{-inf} = 0
    out_term = np.exp(log_out - shift)  # (R,)
    eps[rows] = out_term / (in_sum + out_term)
    return eps
