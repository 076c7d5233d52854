"""Is every memory retrievable? Separations Δ_i and the fixed-point condition of Ramsauer et al.

Δ_i = ξ_i·ξ_i − max_{j≠i} ξ_i·ξ_j, M = max_μ ‖ξ_μ‖. Ramsauer et al. (2020, sec. 2 and
appendix A) show that if Δ_i ≥ T(β) = 2/(βN) + β⁻¹ ln(2(N−1)NβM²), Model B's update has a
fixed point within the sphere of radius 1/(βNM) around ξ_i. T(β) = (c + ln β)/β with
c = 2/N + ln(2(N−1)NM²) rises for β < β_* = e^{1−c} and falls for β > β_*; on the rising
branch the radius 1/(βNM) ≥ 2M (N ≥ 2) covers every fixed point, so the statement says
nothing there. We count a memory as meeting the condition only for β ≥ β_* (and Δ_i > 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import check_beta
from ..errors import InvalidParameterError


@dataclass
class SeparationReport:
    """The fixed-point condition checked for every memory at one β."""

    threshold: float  # T(β); −inf for N = 1
    meets: Tensor  # (N,) bool
    n_meeting: int
    n_separable: int  # memories with Δ_i > 0
    failing: Tensor  # (F,) int64, smallest Δ_i − T(β) first
    beta_min: float | None


def max_norm(xi: Tensor) -> float:
    """M = max_μ ‖ξ_μ‖ (0 for an empty bank)."""
    if xi.shape[0] == 0:
        return 0.0
    return float(torch.linalg.vector_norm(xi.to(torch.float64), dim=-1).max())


def separations(xi: Tensor, *, chunk_rows: int = 2048) -> tuple[Tensor, Tensor]:
    """Exact Δ_i (N,) float64 and the nearest other memory j (N,) int64.

    Computed in float64 over (chunk_rows × chunk_rows) blocks of the Gram matrix, so no
    N × N matrix exists. The nearest j is the lowest index among ties. By convention a
    bank of one memory has Δ = +inf and nearest = −1 (nothing competes with it).
    """
    if xi.ndim != 2:
        raise InvalidParameterError("memories must be (N, d)", {"shape": list(xi.shape)})
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidParameterError("chunk_rows must be an integer ≥ 1", {"chunk_rows": chunk_rows})
    n = xi.shape[0]
    device = xi.device
    best = torch.full((n,), -math.inf, dtype=torch.float64, device=device)  # max_{j≠i} ξ_i·ξ_j
    nearest = torch.full((n,), -1, dtype=torch.int64, device=device)
    self_dot = torch.empty(n, dtype=torch.float64, device=device)
    for r0 in range(0, n, chunk_rows):
        rows = xi[r0 : r0 + chunk_rows].to(torch.float64)  # (R, d)
        self_dot[r0 : r0 + rows.shape[0]] = (rows * rows).sum(-1)
        row_ids = torch.arange(r0, r0 + rows.shape[0], device=device)
        for c0 in range(0, n, chunk_rows):
            cols = xi[c0 : c0 + chunk_rows].to(torch.float64)  # (C, d)
            gram = rows @ cols.T  # (R, C)
            col_ids = torch.arange(c0, c0 + cols.shape[0], device=device)
            gram[row_ids.unsqueeze(1) == col_ids.unsqueeze(0)] = -math.inf
            val, arg = gram.max(dim=1)  # (R,)
            # Strictly greater: earlier blocks keep ties, so the lowest index wins.
            better = val > best[r0 : r0 + rows.shape[0]]
            best[r0 : r0 + rows.shape[0]] = torch.where(better, val, best[r0 : r0 + rows.shape[0]])
            nearest[r0 : r0 + rows.shape[0]] = torch.where(
                better, arg + c0, nearest[r0 : r0 + rows.shape[0]]
            )
    return self_dot - best, nearest


def _check(n: int, beta: float | None, m: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError("n must be an integer ≥ 1", {"n": n})
    if beta is not None:
        check_beta(beta)
    if not math.isfinite(m) or m < 0:
        raise InvalidParameterError("M must be finite and ≥ 0", {"m": m})


def fixed_point_threshold(n: int, beta: float, m: float) -> float:
    """T(β) = 2/(βN) + β⁻¹ ln(2(N−1)NβM²); −inf when N = 1 or M = 0 (log of 0)."""
    _check(n, beta, m)
    arg = 2.0 * (n - 1) * n * beta * m * m
    if arg == 0.0:
        return -math.inf
    return 2.0 / (beta * n) + math.log(arg) / beta


def branch_beta(n: int, m: float) -> float:
    """β_* = e^{1−2/N} / (2(N−1)NM²), the maximum of T; T falls for β > β_* (inf if N=1, M=0)."""
    _check(n, None, m)
    denom = 2.0 * (n - 1) * n * m * m
    return math.inf if denom == 0.0 else math.exp(1.0 - 2.0 / n) / denom


def beta_min(delta_min: float | None, n: int, m: float) -> float | None:
    """Smallest β ≥ β_* with T(β) ≤ delta_min: at it and above every memory with Δ ≥ delta_min
    meets the condition. None when no memory is separable (delta_min None or ≤ 0);
    0.0 when N = 1 (every β works).

    Solved by bisection on log β; the result satisfies T(β) ≤ delta_min exactly in floating
    point. For N ≥ 2, Δ ≤ 2M² < T(β_*) = e^{c−1}, so β_min > β_* and T(β) = delta_min there.
    """
    _check(n, None, m)
    if delta_min is None or not delta_min > 0:
        return None
    if n == 1:
        return 0.0
    lo = branch_beta(n, m)
    if fixed_point_threshold(n, lo, m) <= delta_min:
        return lo
    hi = lo * 2.0
    while fixed_point_threshold(n, hi, m) > delta_min:
        hi *= 2.0
    lo_log, hi_log = math.log(lo), math.log(hi)
    for _ in range(200):
        mid = 0.5 * (lo_log + hi_log)
        if mid in (lo_log, hi_log):
            break
        if fixed_point_threshold(n, math.exp(mid), m) <= delta_min:
            hi_log = mid
        else:
            lo_log = mid
    beta = math.exp(hi_log)
    # exp(log β) can round below the bracket; step up until the condition holds.
    while fixed_point_threshold(n, beta, m) > delta_min:
        beta = math.nextafter(beta, math.inf)
    return beta


def separation_report(delta: Tensor, m: float, beta: float, n: int) -> SeparationReport:
    """Check Δ_i ≥ T(β) for every memory (see the module docstring for the β > β_* rule)."""
    _check(n, beta, m)
    delta = delta.to(torch.float64)
    threshold = fixed_point_threshold(n, beta, m)
    separable = delta > 0  # (N,)
    on_branch = n == 1 or beta >= branch_beta(n, m)
    meets = separable & (delta >= threshold) & on_branch
    margin = delta - threshold  # (N,)
    failing = (~meets).nonzero().squeeze(1)
    order = torch.sort(margin[failing], stable=True).indices
    n_sep = int(separable.sum())
    return SeparationReport(
        threshold=threshold,
        meets=meets,
        n_meeting=int(meets.sum()),
        n_separable=n_sep,
        failing=failing[order],
        beta_min=beta_min(float(delta[separable].min()) if n_sep else None, n, m),
    )
