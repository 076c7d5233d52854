"""The one numpy oracle of Model B (API.md, "Math conventions"), in float64.

Every test that checks a Model B answer (kernels, engine, HTTP, SDK, cluster) compares
against these functions and nothing else, so the formulas the product is held to are
written exactly once outside the product. Independent of lam_engine by construction:
numpy only, dense, no chunking, no tricks beyond the max-shift of log-sum-exp.

Shapes: memories xi (N, d), states v (B, d) or (d,), bias (N,) added to the logits' β·h
as log-strengths (−inf hides a row).
"""

from __future__ import annotations

import numpy as np


def _2d(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v[None, :] if v.ndim == 1 else v


def logits(
    xi: np.ndarray, v: np.ndarray, beta: float, bias: np.ndarray | None = None
) -> np.ndarray:
    """β ξ_μ·v (+ log s_μ): (B, N)."""
    a = beta * (_2d(v) @ np.asarray(xi, dtype=np.float64).T)
    if bias is not None:
        a = a + np.asarray(bias, dtype=np.float64)[None, :]
    return a  # type: ignore[no-any-return]


def logsumexp(a: np.ndarray) -> np.ndarray:
    """log Σ_μ e^{a_μ} per row, −inf for a row with no finite entry: (B,)."""
    m = a.max(axis=1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    s = np.exp(a - m_safe).sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(s > 0, m_safe[:, 0] + np.log(s), -np.inf)  # type: ignore[no-any-return]


def softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (B, N); rows of all −inf give zeros."""
    a = _2d(a)
    m = a.max(axis=1, keepdims=True)
    e = np.exp(a - np.where(np.isfinite(m), m, 0.0))
    s = e.sum(axis=1, keepdims=True)
    return np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)  # type: ignore[no-any-return]


def weights(
    xi: np.ndarray, v: np.ndarray, beta: float, bias: np.ndarray | None = None
) -> np.ndarray:
    """p = softmax(β Ξ v + log s): (B, N)."""
    return softmax(logits(xi, v, beta, bias))


def step(xi: np.ndarray, v: np.ndarray, beta: float, bias: np.ndarray | None = None) -> np.ndarray:
    """One retrieval step v ← Ξᵀ p: (B, d)."""
    return weights(xi, v, beta, bias) @ np.asarray(xi, dtype=np.float64)  # type: ignore[no-any-return]


def energy(
    xi: np.ndarray,
    v: np.ndarray,
    beta: float,
    bias: np.ndarray | None = None,
    *,
    constants: bool = False,
) -> np.ndarray:
    """E(v) = ½‖v‖² − β⁻¹ log Σ_μ s_μ e^{β ξ_μ·v} (+ β⁻¹ log Σ s_μ + ½M² with constants): (B,)."""
    v2 = _2d(v)
    e = 0.5 * (v2**2).sum(axis=1) - logsumexp(logits(xi, v2, beta, bias)) / beta
    if constants:
        xi64 = np.asarray(xi, dtype=np.float64)
        b = np.zeros(len(xi64)) if bias is None else np.asarray(bias, dtype=np.float64)
        live = np.isfinite(b)
        log_mass = logsumexp(b[None, live])[0]  # log Σ s_μ (= log N when all s = 1)
        m2 = float((xi64[live] ** 2).sum(axis=1).max()) if live.any() else 0.0
        e = e + log_mass / beta + 0.5 * m2
    return e  # type: ignore[no-any-return]


def gradient(
    xi: np.ndarray, v: np.ndarray, beta: float, bias: np.ndarray | None = None
) -> np.ndarray:
    """∇E(v) = v − Ξᵀ softmax(β Ξ v + log s): (B, d)."""
    return _2d(v) - step(xi, v, beta, bias)  # type: ignore[no-any-return]


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = _2d(x)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)  # type: ignore[no-any-return]


def retrieve(
    xi: np.ndarray,
    cue: np.ndarray,
    beta: float,
    *,
    steps: int = 1,
    tol: float = 1e-6,
    mask: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    normalize_cue: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A query as API.md defines it: (state (B, d), steps taken (B,), converged (B,)).

    Unknown features (mask false) are zeroed, the cue normalized if asked, then up to
    `steps` updates; after each one the known features are reset to the cue's values,
    and a state stops once ‖v_{t+1} − v_t‖ ≤ tol. steps = 0 returns the prepared cue.
    """
    v = _2d(cue).copy()
    known = None
    if mask is not None:
        known = np.broadcast_to(_2d(np.asarray(mask, dtype=bool)), v.shape)
        v = np.where(known, v, 0.0)
    if normalize_cue:
        v = normalize(v)
    cue0 = v.copy()
    taken = np.zeros(len(v), dtype=np.int64)
    converged = np.zeros(len(v), dtype=bool)
    for _ in range(steps):
        active = ~converged
        if not active.any():
            break
        new = step(xi, v[active], beta, bias)
        if known is not None:
            new = np.where(known[active], cue0[active], new)
        moved = np.linalg.norm(new - v[active], axis=1)
        v[active] = new
        taken[active] += 1
        converged[np.flatnonzero(active)[moved <= tol]] = True
    return v, taken, converged


def novelty(
    xi: np.ndarray,
    x: np.ndarray,
    beta: float,
    tau: float,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `if_novel` store of API.md, judged row by row in request order, densely.

    Row i of the batch x (B, d) is stored when E(x_i) (no constants) under the bank xi
    (N, d) with its `bias` plus the rows stored before it is above `tau`; an empty support
    gives E = +inf (stored). Returns (stored (B,) bool, E_i when judged (B,), nearest (B,):
    the row of the largest logit in the support then, a bank row μ as μ and batch row j as
    N + j; −1 for an empty support).
    """
    xi = np.asarray(xi, dtype=np.float64).reshape(-1, np.shape(x)[1])
    x = np.asarray(x, dtype=np.float64)
    n = len(xi)
    b0 = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)
    stored = np.zeros(len(x), dtype=bool)
    energies = np.empty(len(x))
    nearest = np.full(len(x), -1, dtype=np.int64)
    for i in range(len(x)):
        support = np.concatenate([xi, x[:i][stored[:i]]])
        b = np.concatenate([b0, np.zeros(int(stored[:i].sum()))])
        rows = np.concatenate([np.arange(n), n + np.flatnonzero(stored[:i])])
        a = logits(support, x[i], beta, b)[0]  # (N + accepted,)
        if np.isfinite(a).any():
            energies[i] = 0.5 * float(x[i] @ x[i]) - logsumexp(a[None, :])[0] / beta
            nearest[i] = rows[int(np.argmax(a))]
        else:
            energies[i] = np.inf
        stored[i] = energies[i] > tau
    return stored, energies, nearest


def strength_now(
    strength: np.ndarray, t_mu: np.ndarray, t: float, half_life_s: float | None
) -> np.ndarray:
    """API.md "Forgetting": s_μ · 2^(−(t − t_μ)/half_life_s) (s_μ without a half-life)."""
    s = np.asarray(strength, dtype=np.float64)
    if half_life_s is None:
        return s
    return s * 2.0 ** (-(t - np.asarray(t_mu, dtype=np.float64)) / half_life_s)  # type: ignore[no-any-return]
