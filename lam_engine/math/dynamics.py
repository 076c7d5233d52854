"""The two-layer network of Krotov & Hopfield (2020), eqs. (1)-(2): integrator and energy.

Feature neurons v (B, d) and hidden neurons h (B, N), one hidden neuron per memory ξ_μ:

    τ_f dv/dt = Ξᵀ f − v + I,    τ_h dh/dt = Ξ g − h,    g = ∇L_v(v),  f = ∇L_h(h)

    E = [Σ_i (v_i − I_i) g_i − L_v] + [Σ_μ h_μ f_μ − L_h] − Σ_μi f_μ ξ_μi g_i

dE/dt = −τ_f v̇ᵀ ∇²L_v v̇ − τ_h ḣᵀ ∇²L_h ḣ ≤ 0 for convex Lagrangians, so E never increases
along the exact flow; explicit Euler keeps that up to O(dt²) per step where the activations
are continuous. Where one jumps (Σ|v|, max(h, 0)), E jumps down at each crossing of the
exact flow, but one Euler step across a crossing of v and one of h judges both from the
step's start and can raise E by O(1) (hypothesis found 0.39 for Model A, F = max(x, 0)).
For such pairs a step that would raise E is halved until it does not (the crossings then
fall in different sub-steps, as in the flow), and the rest of the step follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import config
from ..config import DYNAMICS
from ..errors import DimensionMismatchError, EmptyBankError, InvalidParameterError
from .lagrangians import (
    Lagrangian,
    absolute,
    elementwise,
    hidden_function,
    log_sum_exp,
    quadratic,
    spherical,
)


@dataclass
class Trajectory:
    """An integrated trajectory.

    `energy` is a (T, B) float64 tensor: row k is the full energy of every state at
    `times[k]` (t = 0, every `record_every` steps, and the end). `steps` counts Euler steps
    of the longest-running state; a state stops moving once it has `converged`.
    """

    times: list[float]
    energy: Tensor  # (T, B) float64
    v: Tensor  # (B, d)
    h: Tensor  # (B, N)
    f: Tensor  # (B, N): ∇L_h(h) at the end
    converged: Tensor  # (B,) bool
    steps: int


def lagrangians_for(
    model: str, beta: float, params: dict | None = None, prior: Tensor | None = None
) -> tuple[Lagrangian, Lagrangian]:
    """(L_v, L_h) of a model (K&H sec. 3).

    B: ½‖v‖² and β⁻¹ log Σ exp(β h); A: Σ|v_i| and Σ_μ F(h_μ); C: ‖v‖ and Σ_μ F(h_μ), with F
    from `config.hidden_function(params)` (default rectified cubic). β is used by B only,
    and so is `prior` (N,), the log-strengths: L_h = β⁻¹ log Σ exp(β h + log s).
    """
    params = dict(params or {})
    if model == "B":
        return quadratic(), log_sum_exp(beta, prior)
    if model not in ("A", "C"):
        raise InvalidParameterError("model must be one of ('A', 'B', 'C')", {"model": model})
    kind, power = config.hidden_function(params)
    lag_h = elementwise(hidden_function(kind, power))
    return (absolute() if model == "A" else spherical()), lag_h


def full_energy(
    xi: Tensor,
    v: Tensor,
    h: Tensor,
    lag_v: Lagrangian,
    lag_h: Lagrangian,
    input: Tensor | None = None,
) -> Tensor:
    """E of K&H eq. (2) for states v (B, d), hidden h (B, N), current I (d,) or (B, d): (B,)."""
    xi64, v64, h64 = xi.to(torch.float64), v.to(torch.float64), h.to(torch.float64)
    g = lag_v.activation(v64)  # (B, d)
    f = lag_h.activation(h64)  # (B, N)
    drive = v64 if input is None else v64 - input.to(torch.float64)
    e_v = (drive * g).sum(-1) - lag_v.lagrangian(v64)
    e_h = (h64 * f).sum(-1) - lag_h.lagrangian(h64)
    coupling = ((f @ xi64) * g).sum(-1)  # Σ_μi f_μ ξ_μi g_i
    return e_v + e_h - coupling


def velocities(
    xi: Tensor,
    v: Tensor,
    h: Tensor,
    lag_v: Lagrangian,
    lag_h: Lagrangian,
    input: Tensor | None = None,
    *,
    tau_f: float = DYNAMICS.tau_f,
    tau_h: float = DYNAMICS.tau_h,
) -> tuple[Tensor, Tensor]:
    """(dv/dt, dh/dt) of K&H eq. (1), shapes (B, d) and (B, N)."""
    dv = lag_h.activation(h) @ xi - v  # (B, d)
    if input is not None:
        dv = dv + input
    dh = lag_v.activation(v) @ xi.T - h  # (B, N)
    return dv / tau_f, dh / tau_h


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidParameterError(f"{name} must be finite and > 0", {name: value})
    return value


def _check_shapes(xi: Tensor, v0: Tensor, h0: Tensor | None, input: Tensor | None) -> None:
    if xi.ndim != 2 or v0.ndim != 2 or xi.shape[1] != v0.shape[1]:
        raise DimensionMismatchError(
            "memories must be (N, d) and states (B, d)",
            {"memories": list(xi.shape), "states": list(v0.shape)},
        )
    if xi.shape[0] == 0:
        raise EmptyBankError("the bank has no memories")
    if h0 is not None and tuple(h0.shape) != (v0.shape[0], xi.shape[0]):
        raise DimensionMismatchError(
            "hidden must be (B, N)", {"hidden": list(h0.shape), "N": int(xi.shape[0])}
        )
    if input is not None and input.shape[-1] != xi.shape[1]:
        raise DimensionMismatchError("input must be (d,) or (B, d)", {"input": list(input.shape)})


def integrate(
    xi: Tensor,
    v0: Tensor,
    *,
    lag_v: Lagrangian,
    lag_h: Lagrangian,
    h0: Tensor | None = None,
    input: Tensor | None = None,
    tau_f: float = DYNAMICS.tau_f,
    tau_h: float = DYNAMICS.tau_h,
    dt: float = DYNAMICS.dt,
    t_max: float = DYNAMICS.t_max,
    record_every: int = DYNAMICS.record_every,
    tol: float = DYNAMICS.tol,
    max_steps: int = DYNAMICS.steps_max,
) -> Trajectory:
    """Explicit Euler integration of K&H eq. (1), recording the energy of eq. (2).

    h0 defaults to Ξ g(v0) (hidden neurons at rest). The run takes ⌈t_max/dt⌉ steps
    (InvalidParameterError beyond `max_steps`); a state whose ‖dv/dt‖ and ‖dh/dt‖ are both
    ≤ tol is converged and stops; the run ends early when every state has. With dt = τ_f
    and h at rest, one step of the Model B pair is exactly `models.model_b_step`.
    """
    tau_f, tau_h, dt, t_max = (
        _positive(n, x)
        for n, x in (("tau_f", tau_f), ("tau_h", tau_h), ("dt", dt), ("t_max", t_max))
    )
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1:
        raise InvalidParameterError(
            "record_every must be an integer ≥ 1", {"record_every": record_every}
        )
    if not math.isfinite(tol) or tol < 0:
        raise InvalidParameterError("tol must be finite and ≥ 0", {"tol": tol})
    n_steps = max(1, math.ceil(t_max / dt - 1e-9))
    if n_steps > max_steps:
        raise InvalidParameterError(
            "t_max/dt exceeds the step limit", {"steps": n_steps, "max_steps": max_steps}
        )
    _check_shapes(xi, v0, h0, input)
    dtype = torch.promote_types(xi.dtype, v0.dtype)
    if dtype in (torch.float16, torch.bfloat16) or not dtype.is_floating_point:
        dtype = torch.float32
    xi_w = xi.to(dtype)  # (N, d)
    v = v0.to(dtype).clone()  # (B, d)
    h = (lag_v.activation(v) @ xi_w.T) if h0 is None else h0.to(dtype).clone()  # (B, N)
    cur = None if input is None else input.to(dtype)
    if cur is not None and cur.ndim == 1:
        cur = cur.unsqueeze(0).expand_as(v)

    def energy() -> Tensor:
        return full_energy(xi_w, v, h, lag_v, lag_h, cur)

    times, energies = [0.0], [energy()]
    converged = torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
    taken = 0
    guarded = lag_v.jumps or lag_h.jumps
    e_now = energies[0] if guarded else None
    for step in range(1, n_steps + 1):
        dv, dh = velocities(xi_w, v, h, lag_v, lag_h, cur, tau_f=tau_f, tau_h=tau_h)
        speed_v = torch.linalg.vector_norm(dv, dim=-1)  # (B,)
        speed_h = torch.linalg.vector_norm(dh, dim=-1)  # (B,)
        converged |= (speed_v <= tol) & (speed_h <= tol)
        if bool(converged.all()):
            break
        moving = (~converged).unsqueeze(-1).to(dtype)  # (B, 1)
        if e_now is None:
            v = v + dt * moving * dv
            h = h + dt * moving * dh
        else:
            v, h, e_now = _guarded_step(
                xi_w, v, h, dv, dh, dt * moving, e_now, lag_v, lag_h, cur, tau_f, tau_h
            )
        taken = step
        if step % record_every == 0:
            times.append(step * dt)
            energies.append(energy() if e_now is None else e_now)  # the guard's own E
    if not bool(converged.all()):
        dv, dh = velocities(xi_w, v, h, lag_v, lag_h, cur, tau_f=tau_f, tau_h=tau_h)
        speed_v = torch.linalg.vector_norm(dv, dim=-1)
        converged |= (speed_v <= tol) & (torch.linalg.vector_norm(dh, dim=-1) <= tol)
    if times[-1] != taken * dt:
        times.append(taken * dt)
        energies.append(energy())
    return Trajectory(
        times=times,
        energy=torch.stack(energies),
        v=v,
        h=h,
        f=lag_h.activation(h),
        converged=converged,
        steps=taken,
    )


_RISE = 1e-12  # relative: float64 rounding of E's terms is ≈ 1e-16 of their size
_HALVINGS = 30  # a sub-step of dt·2⁻³⁰ is taken whatever E does
_SUBSTEPS = 64  # sub-steps of one step at most (each locates one crossing, in practice)


def _guarded_step(
    xi: Tensor,
    v: Tensor,
    h: Tensor,
    dv: Tensor,
    dh: Tensor,
    dt: Tensor,
    e_now: Tensor,
    lag_v: Lagrangian,
    lag_h: Lagrangian,
    cur: Tensor | None,
    tau_f: float,
    tau_h: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """One Euler step of length dt (B, 1) in sub-steps that never raise E (module doc).

    Each sub-step tries all of the step that is left; a state whose E would rise halves its
    try until it does not; velocities are taken afresh at each sub-step's start.
    """
    left = torch.ones_like(dt)  # (B, 1): the fraction of the step still to go
    for sub in range(_SUBSTEPS):
        if sub:
            dv, dh = velocities(xi, v, h, lag_v, lag_h, cur, tau_f=tau_f, tau_h=tau_h)
        frac = left.clone()
        for _ in range(_HALVINGS):
            v_try, h_try = v + dt * frac * dv, h + dt * frac * dh
            e_try = full_energy(xi, v_try, h_try, lag_v, lag_h, cur)
            rise = e_try - e_now > _RISE * (1 + e_now.abs())  # (B,)
            if not bool(rise.any()):
                break
            frac = torch.where(rise.unsqueeze(-1), frac / 2, frac)
        v, h, e_now = v_try, h_try, e_try
        left = left - frac
        if bool((left <= 0).all()):
            break
    return v, h, e_now
