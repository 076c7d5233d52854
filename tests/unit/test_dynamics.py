"""Two-layer network: Lyapunov energy, reduction to Model B, integrator bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.errors import DimensionMismatchError, InvalidParameterError
from lam_engine.math import lagrangians as lg
from lam_engine.math.dynamics import full_energy, integrate, lagrangians_for, velocities
from lam_engine.math.lagrangians import hidden_function
from lam_engine.math.models import model_a_energy, model_b_energy, model_b_step, model_c_energy
from tests.harness.fixtures import one_torch_thread as one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


F64 = torch.float64

# Convex pairs whose trajectories stay bounded (a bounded g, or a bounded f).
PAIRS = {
    "quadratic+lse": (lg.quadratic(), lg.log_sum_exp(2.0)),
    "tanh+lse": (lg.tanh(), lg.log_sum_exp(3.0)),
    "sigmoid+lse": (lg.sigmoid(), lg.log_sum_exp(1.0)),
    "tanh+rectified3": (lg.tanh(), lg.rectified_power(3)),
    "sigmoid+rectified2": (lg.sigmoid(), lg.rectified_power(2)),
    "spherical+exp": (lg.spherical(), lg.exponential()),
    "quadratic+rectified2": (lg.quadratic(), lg.rectified_power(2)),
}


def _bank(seed: int, n: int, d: int, batch: int, scale: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    xi = torch.randn(n, d, generator=g, dtype=F64) * scale
    v = torch.randn(batch, d, generator=g, dtype=F64)
    cur = torch.randn(d, generator=g, dtype=F64) * 0.5
    return xi, v, cur


@settings(max_examples=15, deadline=None)
@given(
    pair=st.sampled_from(sorted(PAIRS)),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 8),
    d=st.integers(1, 6),
    with_input=st.booleans(),
    off_rest=st.booleans(),
)
def test_energy_never_increases_along_dynamics(pair, seed, n, d, with_input, off_rest):
    lag_v, lag_h = PAIRS[pair]
    if pair.startswith("spherical"):
        # In one dimension L_v = ‖v‖ = |v| has no Hessian at 0 and g = sign(v) jumps when v
        # crosses 0, so the Lyapunov argument does not apply (hypothesis found such a
        # crossing: seed 2914001, n 6, hidden off rest, a rise of 0.11).
        d = max(d, 2)
    # Rectified-quadratic feedback grows without bound for large memories: keep them small.
    xi, v0, cur = _bank(seed, n, d, 3, 0.25 if pair == "quadratic+rectified2" else 0.5)
    h0 = (
        torch.randn(3, n, dtype=F64, generator=torch.Generator().manual_seed(seed))
        if off_rest
        else None
    )
    traj = integrate(
        xi, v0, lag_v=lag_v, lag_h=lag_h, h0=h0, input=cur if with_input else None,
        tau_f=1.0, tau_h=0.1, dt=0.01, t_max=1.0, record_every=1, tol=0.0,
    )  # fmt: skip
    energy = traj.energy  # (T, B)
    assert energy.shape == (len(traj.times), 3) and torch.isfinite(energy).all()
    rise = energy[1:] - energy[:-1]
    assert (rise <= 1e-9 * (1 + energy[:-1].abs())).all(), float(rise.max())


def test_energy_decreases_strictly_off_equilibrium():
    xi, v0, _ = _bank(5, 6, 4, 2)
    lag_v, lag_h = PAIRS["quadratic+lse"]
    traj = integrate(xi, v0, lag_v=lag_v, lag_h=lag_h, t_max=1.0, record_every=5)
    assert (traj.energy[-1] < traj.energy[0] - 1e-3).all()


def test_one_euler_step_at_rest_is_one_attention_step():
    """dt = τ_f and h at rest (h = Ξv, the τ_h → 0 limit): v ← Ξᵀ softmax(βΞv)."""
    xi, v0, _ = _bank(1, 9, 5, 4, 1.0)
    beta = 2.5
    lag_v, lag_h = lagrangians_for("B", beta, {})
    for tau_h in (0.1, 1e-3):
        traj = integrate(
            xi, v0, lag_v=lag_v, lag_h=lag_h, tau_f=1.0, tau_h=tau_h, dt=1.0, t_max=1.0
        )
        assert traj.steps == 1 and traj.times == [0.0, 1.0]
        torch.testing.assert_close(traj.v, model_b_step(xi, v0, beta))
        torch.testing.assert_close(traj.h, v0 @ xi.T)  # h was at rest: dh/dt = 0


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 10),
    d=st.integers(1, 6),
    beta=st.floats(0.1, 10),
)
def test_energy_at_rest_reduces_to_model_energies(seed, n, d, beta):
    """With h = Ξ g(v), eq. (2) is ½‖v‖² − β⁻¹ lse(βΞv) for Model B and −Σ_μ F(ξ_μ·g) for A, C."""
    xi, v, _ = _bank(seed, n, d, 3, 1.0)
    lag_v, lag_h = lagrangians_for("B", beta, {})
    torch.testing.assert_close(
        full_energy(xi, v, v @ xi.T, lag_v, lag_h), model_b_energy(xi, v, beta)
    )
    params = {"F": "rectified_power", "power": 3}
    f_hidden = hidden_function("rectified_power", 3)
    sigma = torch.sign(v)
    lag_v, lag_h = lagrangians_for("A", beta, params)
    torch.testing.assert_close(
        full_energy(xi, sigma, sigma @ xi.T, lag_v, lag_h), model_a_energy(xi, sigma, f_hidden)
    )
    lag_v, lag_h = lagrangians_for("C", beta, params)
    g = v / v.norm(dim=1, keepdim=True)
    torch.testing.assert_close(
        full_energy(xi, v, g @ xi.T, lag_v, lag_h), model_c_energy(xi, v, f_hidden)
    )


def test_full_energy_closed_form_with_input():
    xi = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    v = torch.tensor([[0.5, -1.0]], dtype=F64)
    h = torch.tensor([[0.3, -0.2]], dtype=F64)
    cur = torch.tensor([0.1, 0.2], dtype=F64)
    beta = 1.5
    lag_v, lag_h = lg.quadratic(), lg.log_sum_exp(beta)
    p = torch.softmax(beta * h[0], 0)
    lse = torch.logsumexp(beta * h[0], 0) / beta
    expected = (v[0] - cur) @ v[0] - 0.5 * v[0] @ v[0] + h[0] @ p - lse - p @ xi @ v[0]
    torch.testing.assert_close(full_energy(xi, v, h, lag_v, lag_h, cur)[0], expected)


def test_one_euler_step_off_rest_closed_form():
    xi, v0, cur = _bank(4, 6, 3, 2, 1.0)
    h0 = torch.randn(2, 6, dtype=F64, generator=torch.Generator().manual_seed(9))
    lag_v, lag_h = lg.tanh(), lg.log_sum_exp(2.0)
    dt, tau_f, tau_h = 0.1, 2.0, 0.5
    traj = integrate(
        xi,
        v0,
        lag_v=lag_v,
        lag_h=lag_h,
        h0=h0,
        input=cur,
        tau_f=tau_f,
        tau_h=tau_h,
        dt=dt,
        t_max=dt,
    )
    f0 = torch.softmax(2.0 * h0, dim=1)
    torch.testing.assert_close(traj.v, v0 + dt * (f0 @ xi - v0 + cur) / tau_f)
    torch.testing.assert_close(traj.h, h0 + dt * (torch.tanh(v0) @ xi.T - h0) / tau_h)


def test_lagrangians_for_models():
    lag_v, lag_h = lagrangians_for("B", 2.0, {})
    assert lag_v.name == "quadratic" and lag_h.name.startswith("lse")
    lag_v, lag_h = lagrangians_for("A", 1.0, {})
    assert lag_v.name == "abs" and lag_h.name == "sum_rectified_power(3)"  # config default
    lag_v, lag_h = lagrangians_for("C", 1.0, {"F": "exp"})
    assert lag_v.name == "spherical" and lag_h.name == "sum_exp"
    with pytest.raises(InvalidParameterError):
        lagrangians_for("D", 1.0, {})


def test_trajectory_bookkeeping_and_convergence():
    xi, v0, _ = _bank(3, 5, 4, 2, 1.0)
    lag_v, lag_h = lagrangians_for("B", 4.0, {})
    traj = integrate(xi, v0, lag_v=lag_v, lag_h=lag_h, dt=0.05, t_max=0.5, record_every=3, tol=0.0)
    assert traj.steps == 10 and not traj.converged.any()
    assert traj.times == pytest.approx([0.0, 0.15, 0.3, 0.45, 0.5])
    assert traj.energy.shape == (5, 2) and traj.v.shape == (2, 4) and traj.h.shape == (2, 5)
    torch.testing.assert_close(traj.f, torch.softmax(4.0 * traj.h, dim=1))
    # A long run reaches equilibrium: both velocities vanish and the run stops early.
    long = integrate(xi, v0, lag_v=lag_v, lag_h=lag_h, dt=0.05, t_max=200.0, tol=1e-6)
    assert long.converged.all() and long.steps < 4000
    dv, dh = velocities(xi, long.v, long.h, lag_v, lag_h)
    assert dv.norm(dim=1).max() <= 1e-5 and dh.norm(dim=1).max() <= 1e-5
    assert math.isclose(long.times[-1], long.steps * 0.05)


def test_integrate_validates():
    xi, v0, _ = _bank(0, 3, 2, 1)
    lag_v, lag_h = lagrangians_for("B", 1.0, {})
    kw = {"lag_v": lag_v, "lag_h": lag_h}
    for bad in (
        {"dt": 0.0},
        {"tau_f": -1.0},
        {"tau_h": 0.0},
        {"t_max": math.inf},
        {"record_every": 0},
    ):
        with pytest.raises(InvalidParameterError):
            integrate(xi, v0, **kw, **bad)
    with pytest.raises(InvalidParameterError):
        integrate(xi, v0, **kw, dt=1e-3, t_max=200.0, max_steps=100_000)
    with pytest.raises(DimensionMismatchError):
        integrate(xi, v0, **kw, h0=torch.zeros(1, 4, dtype=F64))
    with pytest.raises(DimensionMismatchError):
        integrate(xi, v0[:, :1], **kw)
