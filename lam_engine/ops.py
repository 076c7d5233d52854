"""Query, energy, dynamics and diagnostics on one bank and its prefilter index.

Each operation takes the bank (`MemoryBank`) and its index (a `CandidateIndex`, or None)
and returns a result dataclass; the caller (the Engine) holds the bank's read lock and has
checked that the bank is not empty.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .bank import MemoryBank
from .certificate_rate import rate_of
from .config import DIAGNOSTICS, DYNAMICS, check_beta
from .errors import DimensionMismatchError, InvalidParameterError, NonconvexLagrangianError
from .inputs import QueryInput
from .kernels import model_b_pass
from .math import diagnostics as diag
from .math import models
from .math.dynamics import integrate, lagrangians_for
from .math.lagrangians import Lagrangian
from .results import (
    DiagnosticsResult,
    DynamicsResult,
    EnergyResult,
    Match,
    QueryBatchResult,
    QueryResult,
)
from .retrieval import (
    CandidateIndex,
    QueryParams,
    Retrieval,
    hidden_f,
    merge_rows,
    prepare_cue,
    retrieve_ac,
    retrieve_b_dense,
    retrieve_b_prefiltered,
)
from .vectors import as_matrix, require_finite

# ---- query ----------------------------------------------------------------------------------


def query(
    bank: MemoryBank, index: CandidateIndex | None, q: QueryInput, *, chunk_bytes: int
) -> QueryBatchResult:
    """Retrieve for a validated (B, d) batch (its dimension already matched the bank's)."""
    params = QueryParams(
        beta=bank.config.beta if q.beta is None else q.beta,
        steps=q.steps,
        tol=q.tol,
        top_k=q.top_k,
    )
    cue = prepare_cue(bank, q.queries, q.mask)
    known = None if q.mask is None else torch.from_numpy(q.mask).to(bank.device)
    if bank.config.model != "B":
        raw = retrieve_ac(bank, cue, known, params)
    else:
        raw = _retrieve_b(bank, index, cue, known, params, exact=q.exact, chunk_bytes=chunk_bytes)
    found = raw.top_rows >= 0
    require_finite(
        raw.states,
        raw.energy,
        raw.top_weights[found],
        raw.top_scores[found],
        beta=params.beta,
    )
    return _to_results(bank, raw, with_payload=q.with_payload, with_vectors=q.with_vectors)


def _retrieve_b(
    bank: MemoryBank,
    index: CandidateIndex | None,
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
    *,
    exact: bool,
    chunk_bytes: int,
) -> Retrieval:
    cfg = bank.config.prefilter
    if index is None or not tries_index(bank, index, exact):
        return retrieve_b_dense(bank, cue, known, params, chunk_bytes)
    rate = rate_of(index)
    if rate is not None and not rate.should_try():
        # The certificate has been failing on this bank: answer as its fallback would.
        raw = retrieve_b_dense(bank, cue, known, params, chunk_bytes)
        raw.missed = np.zeros(cue.shape[0])
        raw.prefiltered = np.zeros(cue.shape[0], dtype=bool)
        return raw
    raw = retrieve_b_prefiltered(bank, cue, known, params, index, cfg.k)
    assert raw.missed is not None
    # The certificate failed (or the index is approximate and unsure): answer exactly.
    fallback = np.nonzero(raw.missed > cfg.tolerance)[0]
    if rate is not None:
        rate.observe(cue.shape[0], len(fallback))
    if len(fallback):
        sub = known[fallback] if known is not None else None
        exact_raw = retrieve_b_dense(bank, cue[fallback], sub, params, chunk_bytes)
        raw = merge_rows(raw, exact_raw, fallback)
    return raw


def tries_index(bank: MemoryBank, index: CandidateIndex | None, exact: bool) -> bool:
    """Whether a Model B query of `bank` goes to its prefilter first (else: the dense pass)."""
    cfg = bank.config.prefilter
    return not (index is None or exact or bank.count < cfg.min_size or cfg.k > bank.count)


def reads_little(bank: MemoryBank, index: Any, q: QueryInput, limit_bytes: int) -> bool:
    """Whether `q` surely reads at most about `limit_bytes`: the whole bank that few times, or
    a light index search being tried (`Prefilter.light_search`; a fallback is rare)."""
    if bank.config.model != "B" or q.batch > 4:
        return False
    whole = bank.count * bank.config.dim * bank.xi.element_size() * (q.steps + 1) * q.batch
    if whole <= limit_bytes:
        return True
    if not tries_index(bank, index, q.exact) or not index.light_search:
        return False
    return (rate := rate_of(index)) is None or rate.tries()


def _to_results(
    bank: MemoryBank, raw: Retrieval, *, with_payload: bool, with_vectors: bool
) -> QueryBatchResult:
    results = []  # Python numbers made per array (tolist), not one numpy scalar per value
    states = raw.states.cpu().numpy()
    rows, weights, scores = raw.top_rows.tolist(), raw.top_weights.tolist(), raw.top_scores.tolist()
    for i in range(states.shape[0]):
        matches = []
        for r, w, s in zip(rows[i], weights[i], scores[i], strict=True):
            if r < 0:
                continue
            matches.append(
                Match(
                    id=bank.id_at(r),
                    weight=w,
                    score=s,
                    payload=bank.payload_at(r) if with_payload else None,
                    vector=bank.vector_at(r) if with_vectors else None,
                    with_payload=with_payload,
                )
            )
        missed, pre = None, False
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


# ---- energy ---------------------------------------------------------------------------------


def energy(
    bank: MemoryBank,
    states: np.ndarray,
    *,
    beta: Any = None,
    constants: bool = False,
    gradient: bool = False,
    chunk_bytes: int,
) -> EnergyResult:
    """E(v) (and ∇E) of validated states (B, d): Model B by one pass, A and C densely."""
    v = torch.from_numpy(states).to(bank.device)
    if bank.config.model == "B":
        e, g = _energy_b(
            bank, v, check_beta(beta, bank.config.beta), constants, gradient, chunk_bytes
        )
    else:
        e, g = _energy_ac(bank, v, gradient=gradient)
    require_finite(e, *([] if g is None else [g]))
    return EnergyResult(energies=e, gradients=g)


def _energy_b(
    bank: MemoryBank,
    states: torch.Tensor,
    beta: float,
    constants: bool,
    gradient: bool,
    chunk_bytes: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """E(v) = ½‖v‖² − β⁻¹ log Σ s_μ exp(β ξ·v) [+ β⁻¹ log Σ s_μ + ½M²], ∇E = v − Ξᵀ p.

    With every s_μ = 1, log Σ s_μ = log N (math/strengths.py, docs/math.md).
    """
    res = model_b_pass(
        bank.xi, states, beta, bias=bank.bias, chunk_bytes=chunk_bytes, need_out=gradient
    )
    lse = res.lse.double() + bank.bias_offset()  # the log-priors' common part (strengths.py)
    e = 0.5 * (states.double() ** 2).sum(dim=1) - lse / beta
    if constants:
        e = e + bank.log_mass() / beta + 0.5 * bank.max_norm() ** 2
    grad = (states.float() - res.out).cpu().numpy() if gradient else None
    return e.cpu().numpy(), grad


def _energy_ac(
    bank: MemoryBank, states: torch.Tensor, *, gradient: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    F = hidden_f(bank)
    xi = bank.alive_xi().double()  # (N, d)
    v = states.double().clone().requires_grad_(gradient)
    fn = models.model_a_energy if bank.config.model == "A" else models.model_c_energy
    with torch.set_grad_enabled(gradient):
        e = fn(xi, v, F)  # (B,)
        grad = None
        if gradient:
            (g,) = torch.autograd.grad(e.sum(), v)
            grad = g.float().cpu().numpy()
    return e.detach().cpu().numpy(), grad


# ---- dynamics -------------------------------------------------------------------------------


def require_convex(model: str, lag_v: Lagrangian, lag_h: Lagrangian) -> None:
    """Refuse a pair of Lagrangians of which one lacks a PSD Hessian on its domain.

    The rule (K&H 2020, eq. (3)): dE/dt = −τ_f v̇ᵀ∇²L_v v̇ − τ_h ḣᵀ∇²L_h ḣ ≤ 0 needs both
    Hessians PSD wherever the state can be; the hidden state h is any real vector (the
    client may set h₀, and h relaxes towards Ξ g from anywhere). So F(h) = hⁿ with odd
    n ≥ 3 is refused for Models A and C alike (F″ = n(n−1)hⁿ⁻² < 0 for h < 0), even where a
    run happened to descend; F = x, even powers, max(x, 0)ⁿ (n ≥ 1) and eˣ are convex, and
    so are the feature Lagrangians ½‖v‖² (B), Σ|v_i| (A) and ‖v‖ (C), and lse (B).
    Queries use the discrete updates, whose descent does not need this: they are not refused.
    """
    for layer, lag in (("L_v", lag_v), ("L_h", lag_h)):
        if not lag.convex:
            raise NonconvexLagrangianError(
                f"model {model}: {layer} = {lag.name} is not convex (its Hessian is negative "
                "somewhere), so the energy of /dynamics may increase; use F = rectified_power "
                "(max(h, 0)ⁿ), an even power, or exp",
                {"lagrangian": lag.name, "layer": layer, "convex": ["rectified_power", "exp"]},
            )


def _vector(value: Any, length: int, what: str) -> torch.Tensor:
    arr = as_matrix([value] if np.ndim(value) == 1 else value, length, what)
    if arr.shape[0] != 1:
        raise DimensionMismatchError(f"{what} must be one vector of length {length}")
    return torch.from_numpy(arr.astype(np.float64))


def dynamics(
    bank: MemoryBank,
    state: Any,
    *,
    hidden: Any = None,
    input: Any = None,
    beta: Any = None,
    tau_f: float = DYNAMICS.tau_f,
    tau_h: float = DYNAMICS.tau_h,
    dt: float = DYNAMICS.dt,
    t_max: float = DYNAMICS.t_max,
    record_every: int = DYNAMICS.record_every,
    tol: float = DYNAMICS.tol,
    top_k: int = DYNAMICS.top_k,
    max_steps: int = DYNAMICS.steps_max,
) -> DynamicsResult:
    """Integrate K&H eq. (1) from `state` (NonconvexLagrangianError: see require_convex)."""
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
    # Model B's hidden softmax carries the strengths: f = softmax(β h + log s) (strengths.py).
    prior = bank.alive_bias() if bank.config.model == "B" else None
    lag_v, lag_h = lagrangians_for(bank.config.model, b, dict(bank.config.model_params), prior)
    require_convex(bank.config.model, lag_v, lag_h)
    n, d = xi.shape
    v0 = _vector(state, d, "state").to(xi.device)
    h0 = None if hidden is None else _vector(hidden, n, "hidden").to(xi.device)
    cur = None if input is None else _vector(input, d, "input").to(xi.device)
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
    values, idx = torch.topk(traj.f[0], min(top_k, n))
    rows = bank.alive_rows()
    hidden_top = [
        {"id": bank.id_at(int(rows[int(i)])), "value": float(val)}
        for val, i in zip(values.tolist(), idx.tolist(), strict=True)
    ]
    result = DynamicsResult(
        times=list(traj.times),
        energy=[float(e) for e in traj.energy[:, 0].tolist()],
        state=traj.v[0].float().cpu().numpy(),
        hidden_top=hidden_top,
        converged=bool(traj.converged[0]),
        steps=int(traj.steps),
    )
    require_finite(np.asarray(result.energy), result.state)
    return result


# ---- diagnostics ----------------------------------------------------------------------------


def _separations_via_index(bank: MemoryBank, index: CandidateIndex) -> torch.Tensor:
    """Δ_i through the prefilter: the nearest other memory among the index's top-2."""
    vectors = bank.alive_vectors()  # (N, d)
    keys = bank.keys[bank.alive_rows()]
    scores, found = index.search(vectors, 2)
    self_score = (vectors.astype(np.float64) ** 2).sum(axis=1)
    other = np.where(found[:, 0] == keys, scores[:, 1], scores[:, 0]).astype(np.float64)
    other = np.where(found[:, 0] == keys, np.where(found[:, 1] >= 0, other, -np.inf), other)
    return torch.from_numpy(self_score - other)


def diagnostics(
    bank: MemoryBank,
    index: CandidateIndex | None,
    *,
    beta: Any = None,
    limit: int = DIAGNOSTICS.limit,
    offset: int = DIAGNOSTICS.offset,
) -> DiagnosticsResult:
    """Separation report of the bank at β (Ramsauer's fixed-point condition per memory)."""
    b = check_beta(beta, bank.config.beta)
    for name, val, hi in (("limit", limit, DIAGNOSTICS.limit_max), ("offset", offset, 1 << 40)):
        if isinstance(val, bool) or not isinstance(val, int) or not 0 <= val <= hi:
            raise InvalidParameterError(f"{name} must be an integer in [0, {hi}]", {name: val})
    xi = bank.alive_xi()
    n = xi.shape[0]
    if n <= DIAGNOSTICS.exact_max or index is None:
        delta, _ = diag.separations(xi.double())
        method = "exact"
    else:
        delta = _separations_via_index(bank, index)
        method = "index" if index.exact_topk else "index_approximate"
    m = diag.max_norm(xi)
    report = diag.separation_report(delta, m, b, n)
    rows = bank.alive_rows()
    failing = report.failing.tolist()
    items = [
        {
            "id": bank.id_at(int(rows[i])),
            "delta": float(delta[i]),
            "margin": float(delta[i]) - report.threshold,
        }
        for i in failing[offset : offset + limit]
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
