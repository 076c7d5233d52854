"""Engine-side orchestration of the two-layer dynamics and the separation diagnostics."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import diagnostics as diag
from .dynamics import integrate, lagrangians_for
from .errors import DimensionMismatchError, InvalidParameterError
from .query import check_beta
from .results import DiagnosticsResult, DynamicsResult
from .vectors import as_matrix

if TYPE_CHECKING:
    from .engine import BankSlot

EXACT_DIAGNOSTICS_MAX = 20_000
MAX_PAGE = 10_000


def _vector(value: Any, length: int, what: str) -> torch.Tensor:
    arr = as_matrix([value] if np.ndim(value) == 1 else value, length, what)
    if arr.shape[0] != 1:
        raise DimensionMismatchError(f"{what} must be one vector of length {length}")
    return torch.from_numpy(arr.astype(np.float64))


def run_dynamics(
    slot: BankSlot,
    state: Any,
    *,
    hidden: Any = None,
    input: Any = None,
    beta: Any = None,
    tau_f: float = 1.0,
    tau_h: float = 0.1,
    dt: float = 0.01,
    t_max: float = 5.0,
    record_every: int = 10,
    tol: float = 1e-5,
    top_k: int = 5,
    max_steps: int = 100_000,
) -> DynamicsResult:
    """Integrate eq. (1) from `state`; caller holds the bank's read lock."""
    bank = slot.bank
    b = check_beta(beta, bank.config.beta)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise InvalidParameterError("top_k must be an integer ≥ 0", {"top_k": top_k})
    for name, val in (
        ("tau_f", tau_f),
        ("tau_h", tau_h),
        ("dt", dt),
        ("t_max", t_max),
        ("tol", tol),
    ):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise InvalidParameterError(f"{name} must be a finite number", {name: val})
    xi = bank.alive_xi().double()  # (N, d): hidden units follow the memory order
    n, d = xi.shape
    v0 = _vector(state, d, "state").to(xi.device)
    h0 = None if hidden is None else _vector(hidden, n, "hidden").to(xi.device)
    cur = None if input is None else _vector(input, d, "input").to(xi.device)
    lag_v, lag_h = lagrangians_for(bank.config.model, b, dict(bank.config.model_params))
    traj = integrate(
        xi,
        v0,
        lag_v=lag_v,
        lag_h=lag_h,
        h0=h0,
        input=cur,
        tau_f=float(tau_f),
        tau_h=float(tau_h),
        dt=float(dt),
        t_max=float(t_max),
        record_every=record_every,
        tol=float(tol),
        max_steps=max_steps,
    )
    f = traj.f[0]
    k = min(top_k, n)
    values, idx = torch.topk(f, k)
    rows = bank.alive_rows()
    hidden_top = [
        {"id": bank.id_at(int(rows[int(i)])), "value": float(val)}
        for val, i in zip(values.tolist(), idx.tolist(), strict=True)
    ]
    return DynamicsResult(
        times=list(traj.times),
        energy=[float(e) for e in traj.energy[:, 0].tolist()],
        state=traj.v[0].float().cpu().numpy(),
        hidden_top=hidden_top,
        converged=bool(traj.converged[0]),
        steps=int(traj.steps),
    )


def _separations_via_index(slot: BankSlot, xi: torch.Tensor) -> torch.Tensor:
    """Δ_i through the prefilter: the nearest other memory among the index's top-2."""
    assert slot.prefilter is not None
    vectors = np.ascontiguousarray(xi.float().cpu().numpy())
    keys = slot.bank.keys[slot.bank.alive_rows()]
    scores, found = slot.prefilter.search(vectors, 2)
    self_score = (xi.double() ** 2).sum(dim=1).cpu().numpy()
    other = np.where(found[:, 0] == keys, scores[:, 1], scores[:, 0]).astype(np.float64)
    other = np.where(found[:, 0] == keys, np.where(found[:, 1] >= 0, other, -np.inf), other)
    return torch.from_numpy(self_score - other)


def run_diagnostics(
    slot: BankSlot, *, beta: Any = None, limit: int = 100, offset: int = 0
) -> DiagnosticsResult:
    """Separation report of the bank at β; caller holds the bank's read lock."""
    bank = slot.bank
    b = check_beta(beta, bank.config.beta)
    for name, val, hi in (("limit", limit, MAX_PAGE), ("offset", offset, 1 << 40)):
        if isinstance(val, bool) or not isinstance(val, int) or not 0 <= val <= hi:
            raise InvalidParameterError(f"{name} must be an integer in [0, {hi}]", {name: val})
    xi = bank.alive_xi()
    n = xi.shape[0]
    if n <= EXACT_DIAGNOSTICS_MAX or slot.prefilter is None:
        delta, _ = diag.separations(xi.double())
        method = "exact"
    else:
        delta = _separations_via_index(slot, xi)
        method = "index" if slot.prefilter.exact_topk else "index_approximate"
    m = diag.max_norm(xi)
    report = diag.separation_report(delta, m, b, n)
    rows = bank.alive_rows()
    failing = report.failing.tolist()
    page = failing[offset : offset + limit]
    items = [
        {
            "id": bank.id_at(int(rows[i])),
            "delta": float(delta[i]),
            "margin": float(delta[i]) - report.threshold,
        }
        for i in page
    ]
    finite = delta[torch.isfinite(delta)]
    separation = (
        {"min": float(finite.min()), "mean": float(finite.mean()), "max": float(finite.max())}
        if finite.numel()
        else {}
    )
    return DiagnosticsResult(
        beta=b,
        count=n,
        max_norm=m,
        threshold=report.threshold,
        n_meeting=report.n_meeting,
        n_separable=report.n_separable,
        beta_min=report.beta_min,
        failing=items,
        failing_total=len(failing),
        method=method,
        separation=separation,
        next_offset=offset + limit if offset + limit < len(failing) else None,
    )
