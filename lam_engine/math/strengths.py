"""Strengths s_μ > 0 as a prior in Model B's softmax, and their half-life (API.md,
"Forgetting"). Pure functions on numpy float64 arrays; docs/math.md has the derivation.

    p_μ ∝ s_μ exp(β ξ_μ·v)            the log-strength is a bias on the hidden unit μ
    E(v) = ½‖v‖² − β⁻¹ log Σ_μ s_μ exp(β ξ_μ·v)   (+ β⁻¹ log Σ_μ s_μ + ½M², E ≥ 0)
    s_μ(t) = s_μ · 2^(−(t − t_μ)/H)   with a half-life H (t_μ: stored or last reinforced)

Precision: unix seconds are ~1.8e9, so (t − t_μ)/H is formed in float64 and never in
float32. The decay splits into a per-row part, constant in time, and a common part:

    log s_μ(t) = [log s_μ − c (t_ref − t_μ)] − c (t − t_ref),   c = ln 2 / H

The bracket (`log_prior`, relative to a reference time t_ref) is the bias the kernels add
to the logits, in float32; the common part (`prior_offset`) cancels in p and in the state
(it shifts every logit alike) but not in E, to which it is added in float64. So a bank
that fades costs no per-query work beyond the bias add: the bias changes only on writes.
"""

from __future__ import annotations

import math

import numpy as np

LN2 = math.log(2.0)
# A row's bias may grow to this (in nats) before the reference time is moved forward:
# float32 keeps ~7 digits, so |bias| ≲ 64 keeps the weights' relative error ≲ 1e-5.
REBASE_AT = 32.0


def decay_rate(half_life_s: float | None) -> float:
    """c = ln 2 / H (nats per second); 0 without a half-life."""
    return 0.0 if half_life_s is None else LN2 / float(half_life_s)


def log_prior(
    strength: np.ndarray, t_mu: np.ndarray, t_ref: float, half_life_s: float | None
) -> np.ndarray:
    """log s_μ − c (t_ref − t_μ): the per-row bias relative to `t_ref` (float64)."""
    out = np.log(np.asarray(strength, dtype=np.float64))
    c = decay_rate(half_life_s)
    if c:
        out = out - c * (float(t_ref) - np.asarray(t_mu, dtype=np.float64))
    return out


def prior_offset(t: float, t_ref: float, half_life_s: float | None) -> float:
    """−c (t − t_ref): the common part of log s_μ(t), added to log Σ in E (float64)."""
    return -decay_rate(half_life_s) * (float(t) - float(t_ref))


def strength_now(
    strength: np.ndarray, t_mu: np.ndarray, t: float, half_life_s: float | None
) -> np.ndarray:
    """s_μ · 2^(−(t − t_μ)/H): the strength in force at time t (s_μ without a half-life)."""
    s = np.asarray(strength, dtype=np.float64)
    if half_life_s is None:
        return s
    return s * np.exp2(-(float(t) - np.asarray(t_mu, dtype=np.float64)) / float(half_life_s))


def log_mass(bias: np.ndarray, offset: float) -> float:
    """log Σ_μ s_μ(t) from the rows' biases (float64) and the common offset: the energy's
    constant β⁻¹ log Σ s_μ (log N when every s_μ = 1)."""
    b = np.asarray(bias, dtype=np.float64)
    if b.size == 0:
        return -math.inf
    m = float(b.max())
    return m + math.log(float(np.exp(b - m).sum())) + float(offset)
