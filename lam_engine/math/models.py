"""Models A, B and C of Krotov & Hopfield (2020): energies, gradients and update rules.

Dense, batched reference implementations. Memories ξ are the rows of `xi` (N, d); states
`v` (or binary `sigma`) are (B, d). "K&H" is Krotov & Hopfield, "Large Associative Memory
Problem in Neurobiology and Machine Learning" (arXiv:2008.06996, sec. 3: the three limits
of the two-layer network of eqs. (1)-(2)); "Ramsauer" is Ramsauer et al., "Hopfield
Networks is All You Need" (arXiv:2008.02217, sec. 2) for Model B's constants. See docs/math.md.

Dtypes: states come back in the promoted dtype of (xi, v) (float16/bfloat16 promoted to
float32); energies always come back as float64 (B,), since they are differences of large
numbers near a fixed point and, for F = exp, beyond float32's range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..config import QUERY, check_beta
from ..errors import DimensionMismatchError, EmptyBankError, InvalidParameterError
from .lagrangians import HiddenFunction

_EPS64 = torch.finfo(torch.float64).eps


class Retrieval(NamedTuple):
    """Result of `model_b_retrieve`: unpacks as (state, steps, converged)."""

    state: Tensor  # (B, d)
    steps: Tensor  # (B,) int64: update steps applied to each state
    converged: Tensor  # (B,) bool: ‖v_{t+1} − v_t‖ ≤ tol reached within `steps`


# --------------------------------------------------------------------------- checks


def _work_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point or dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


def _check(xi: Tensor, v: Tensor) -> None:
    if xi.ndim != 2 or v.ndim != 2:
        raise DimensionMismatchError(
            "memories must be (N, d) and states (B, d)",
            {"memories": list(xi.shape), "states": list(v.shape)},
        )
    if xi.shape[1] != v.shape[1]:
        raise DimensionMismatchError(
            "state dimension differs from the memories'",
            {"dim": int(xi.shape[1]), "got": int(v.shape[1])},
        )
    if xi.shape[0] == 0:
        raise EmptyBankError("the bank has no memories")


def _unit(v: Tensor) -> Tensor:
    # g = v/‖v‖ with g(0) = 0 (Model C's activation is undefined at the origin).
    norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)  # (B, 1)
    return torch.where(norm > 0, v / torch.where(norm > 0, norm, 1.0), 0.0)


# --------------------------------------------------------------------------- Model B


def model_b_scores(xi: Tensor, v: Tensor) -> Tensor:
    """Similarities h_μ = ξ_μ · v, (B, N), in the work dtype."""
    _check(xi, v)
    dtype = _work_dtype(xi, v)
    return v.to(dtype) @ xi.to(dtype).T  # (B, N)


def model_b_weights(xi: Tensor, v: Tensor, beta: float) -> Tensor:
    """Separation weights p = softmax(β Ξ v), (B, N)."""
    beta = check_beta(beta)
    return torch.softmax(beta * model_b_scores(xi, v), dim=-1)  # (B, N)


def model_b_step(xi: Tensor, v: Tensor, beta: float) -> Tensor:
    """One Model B update v ← Ξᵀ softmax(β Ξ v) (K&H sec. 3, Model B; Ramsauer's update rule).

    It is the attention step and the concave-convex procedure step on E(v): ½‖v‖² is the
    convex part, −lse the concave one, so E never increases along it.
    """
    p = model_b_weights(xi, v, beta)  # (B, N)
    return p @ xi.to(p.dtype)  # (B, d)


def model_b_gradient(xi: Tensor, v: Tensor, beta: float) -> Tensor:
    """∇E(v) = v − Ξᵀ softmax(β Ξ v), so that a step is v ← v − ∇E(v)."""
    out = model_b_step(xi, v, beta)  # (B, d)
    return v.to(out.dtype) - out


def model_b_energy(xi: Tensor, v: Tensor, beta: float, *, constants: bool = False) -> Tensor:
    """E(v) = ½‖v‖² − β⁻¹ log Σ_μ exp(β ξ_μ·v) (K&H sec. 3, Model B), float64 (B,).

    With `constants` it adds β⁻¹ log N + ½M², M = max_μ ‖ξ_μ‖ (Ramsauer's energy),
    which makes E ≥ 0: lse ≤ β⁻¹ log N + M‖v‖, so E ≥ ½(‖v‖ − M)².
    """
    beta = check_beta(beta)
    scores = model_b_scores(xi, v).to(torch.float64)  # (B, N)
    v64 = v.to(torch.float64)
    energy = 0.5 * (v64 * v64).sum(-1) - torch.logsumexp(beta * scores, dim=-1) / beta  # (B,)
    if constants:
        m = torch.linalg.vector_norm(xi.to(torch.float64), dim=-1).max()
        energy = energy + math.log(xi.shape[0]) / beta + 0.5 * m * m
    return energy


def _clamp_rows(mask: Tensor, batch: int, d: int) -> Tensor:
    if mask.dtype != torch.bool:
        raise InvalidParameterError("mask must be boolean")
    if mask.ndim == 1:
        mask = mask.unsqueeze(0)
    if mask.ndim != 2 or mask.shape[1] != d or mask.shape[0] not in (1, batch):
        raise DimensionMismatchError(
            "mask must be (d,), (1, d) or (B, d)", {"mask": list(mask.shape), "dim": d}
        )
    return mask.expand(batch, d)


def model_b_retrieve(
    xi: Tensor,
    v: Tensor,
    beta: float,
    *,
    mask: Tensor | None = None,
    steps: int = QUERY.steps,
    tol: float = QUERY.tol,
    normalize: bool = False,
) -> Retrieval:
    """Dense reference of a Model B query with API.md's masked clamping rule.

    1. unknown features (mask false) of the cue are set to 0; 2. if `normalize`, the cue
    is then L2-normalized (a zero cue stays zero); 3. up to `steps` times
    v ← Ξᵀ softmax(β Ξ v), after which the known features are reset to the cue's values;
    4. each state stops on its own once ‖v_{t+1} − v_t‖ ≤ tol (that step is counted and
    the state is `converged`); the others continue until `steps`.
    """
    _check(xi, v)
    beta = check_beta(beta)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidParameterError("steps must be an integer ≥ 1", {"steps": steps})
    if not math.isfinite(tol) or tol < 0:
        raise InvalidParameterError("tol must be finite and ≥ 0", {"tol": tol})
    batch, d = v.shape
    dtype = _work_dtype(xi, v)
    cue = v.to(dtype).clone()  # (B, d)
    known = None if mask is None else _clamp_rows(mask.to(v.device), batch, d)
    if known is not None:
        cue = torch.where(known, cue, 0.0)
    if normalize:
        cue = _unit(cue)
    state = cue.clone()
    taken = torch.zeros(batch, dtype=torch.int64, device=v.device)
    converged = torch.zeros(batch, dtype=torch.bool, device=v.device)
    for _ in range(steps):
        rows = (~converged).nonzero().squeeze(1)  # (b,)
        if rows.numel() == 0:
            break
        new = model_b_step(xi, state[rows], beta)  # (b, d)
        if known is not None:
            new = torch.where(known[rows], cue[rows], new)
        moved = torch.linalg.vector_norm((new - state[rows]).to(torch.float64), dim=-1)
        state[rows] = new
        taken[rows] += 1
        converged[rows[moved <= tol]] = True
    return Retrieval(state, taken, converged)


# --------------------------------------------------------------------------- Model A


def model_a_energy(xi: Tensor, sigma: Tensor, F: HiddenFunction) -> Tensor:
    """E = −Σ_μ F(ξ_μ · σ) (K&H sec. 3, Model A: the dense associative memory), float64 (B,)."""
    _check(xi, sigma)
    overlaps = sigma.to(torch.float64) @ xi.to(torch.float64).T  # (B, N)
    if F.kind == "exp":
        # Σ exp(m_μ) = exp(lse m): one overflow point instead of N.
        return -torch.exp(torch.logsumexp(overlaps, dim=-1))
    return -F.F(overlaps).sum(-1)


def model_a_gradient(xi: Tensor, sigma: Tensor, F: HiddenFunction) -> Tensor:
    """∂E/∂σ = −Ξᵀ F′(Ξ σ) of E = −Σ_μ F(ξ_μ·σ) taken on continuous σ, (B, d)."""
    _check(xi, sigma)
    xi64 = xi.to(torch.float64)
    out = -(F.dF(sigma.to(torch.float64) @ xi64.T) @ xi64)  # (B, d)
    return out.to(_work_dtype(xi, sigma))


def _flip_sign(F: HiddenFunction, a: Tensor, b: Tensor) -> Tensor:
    """sign[Σ_μ F(a_μ) − Σ_μ F(b_μ)] per row of (B, N) inputs, 0 within rounding."""
    if F.kind == "exp":
        # Compare log Σ e^a with log Σ e^b: the sums themselves overflow for overlaps ≳ 709.
        la, lb = torch.logsumexp(a, dim=-1), torch.logsumexp(b, dim=-1)  # (B,)
        diff = la - lb
        scale = torch.maximum(la.abs(), lb.abs()).clamp(min=1.0)
    else:
        # F is homogeneous of degree n: divide by a power of two ≥ max|x| (exact in binary)
        # so xⁿ cannot overflow; the sign of the difference is unchanged.
        top = torch.maximum(a.abs().amax(-1), b.abs().amax(-1)).clamp(min=1.0)  # (B,)
        s = torch.exp2(torch.ceil(torch.log2(top))).unsqueeze(-1)  # (B, 1)
        fa, fb = F.F(a / s), F.F(b / s)  # (B, N)
        diff = fa.sum(-1) - fb.sum(-1)
        scale = fa.abs().sum(-1) + fb.abs().sum(-1)
    # A near-tie keeps σ_i: keeping never raises the energy, flipping on noise might.
    tie = diff.abs() <= 64 * _EPS64 * scale
    return torch.where(tie, 0.0, torch.sign(diff))


def model_a_sweep(
    xi: Tensor, sigma: Tensor, F: HiddenFunction, *, order: Sequence[int] | None = None
) -> Tensor:
    """One asynchronous sweep of Model A over every feature i (K&H sec. 3, Model A).

    σ_i ← sign[Σ_μ F(ξ_μi + Σ_{j≠i} ξ_μj σ_j) − F(−ξ_μi + Σ_{j≠i} ξ_μj σ_j)], ties keep σ_i,
    features visited in `order` (default 0..d−1). Each update picks the σ_i ∈ {±1} of
    lowest energy with the others fixed, so E = −Σ_μ F(ξ_μ·σ) never increases (for any F).
    The overlaps m_μ = ξ_μ·σ are kept up to date incrementally: O(d·N·B) per sweep.
    """
    _check(xi, sigma)
    d = xi.shape[1]
    idx = list(range(d)) if order is None else [int(i) for i in order]
    if any(i < 0 or i >= d for i in idx):
        raise InvalidParameterError("order holds a feature index out of range", {"dim": d})
    xi64 = xi.to(torch.float64)  # (N, d)
    s = sigma.to(torch.float64).clone()  # (B, d)
    overlaps = s @ xi64.T  # (B, N)
    for i in idx:
        col = xi64[:, i]  # (N,)
        old = s[:, i]  # (B,)
        rest = overlaps - old.unsqueeze(-1) * col  # (B, N): Σ_{j≠i} ξ_μj σ_j
        vote = _flip_sign(F, rest + col, rest - col)  # (B,)
        new = torch.where(vote == 0, old, vote)
        overlaps = rest + new.unsqueeze(-1) * col
        s[:, i] = new
    return s.to(_work_dtype(xi, sigma))


# --------------------------------------------------------------------------- Model C


def model_c_energy(xi: Tensor, v: Tensor, F: HiddenFunction) -> Tensor:
    """E = −Σ_μ F(ξ_μ · g), g = v/‖v‖ (K&H sec. 3, Model C; g(0) = 0), float64 (B,)."""
    _check(xi, v)
    overlaps = _unit(v.to(torch.float64)) @ xi.to(torch.float64).T  # (B, N)
    if F.kind == "exp":
        return -torch.exp(torch.logsumexp(overlaps, dim=-1))
    return -F.F(overlaps).sum(-1)


def model_c_gradient(xi: Tensor, v: Tensor, F: HiddenFunction) -> Tensor:
    """∇E(v) = −(I − g gᵀ) Ξᵀ F′(Ξ g) / ‖v‖ (zero at v = 0), (B, d)."""
    _check(xi, v)
    v64 = v.to(torch.float64)
    xi64 = xi.to(torch.float64)
    g = _unit(v64)  # (B, d)
    pull = F.dF(g @ xi64.T) @ xi64  # (B, d): Σ_μ ξ_μ F′(ξ_μ·g)
    tangent = pull - (pull * g).sum(-1, keepdim=True) * g
    norm = torch.linalg.vector_norm(v64, dim=-1, keepdim=True)
    out = torch.where(norm > 0, -tangent / torch.where(norm > 0, norm, 1.0), 0.0)
    return out.to(_work_dtype(xi, v))


def model_c_step(xi: Tensor, v: Tensor, F: HiddenFunction, *, alpha: float = 1.0) -> Tensor:
    """Model C update v ← α⁻¹ Σ_μ ξ_μ F′(ξ_μ · g), g = v/‖v‖ (K&H sec. 3, Model C).

    The Euler step of τ_f dv/dt = Σ_μ ξ_μ F′(ξ_μ·g) − α v with dt = τ_f/α. For convex F,
    Σ F(ξ·g′) ≥ Σ F(ξ·g) + α v′·(g′ − g) ≥ Σ F(ξ·g) since v′·g′ = ‖v′‖ ≥ v′·g: E never
    increases. A state whose update is 0 (e.g. rectified F, all overlaps < 0) maps to 0.
    """
    _check(xi, v)
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise InvalidParameterError("alpha must be finite and > 0", {"alpha": alpha})
    xi64 = xi.to(torch.float64)
    g = _unit(v.to(torch.float64))  # (B, d)
    out = F.dF(g @ xi64.T) @ xi64 / alpha  # (B, d)
    return out.to(_work_dtype(xi, v))
