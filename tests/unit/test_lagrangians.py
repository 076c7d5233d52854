"""Lagrangians: activation = ∇L (autograd), closed forms, convexity (PSD Hessian)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.errors import InvalidParameterError
from lam_engine.math import lagrangians as lg
from tests.harness.fixtures import one_torch_thread as one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMOOTH = {
    "quadratic": lg.quadratic(),
    "power2": lg.power(2),
    "power3": lg.power(3),
    "power1": lg.power(1),
    "rectified_power2": lg.rectified_power(2),
    "rectified_power3": lg.rectified_power(3),
    "exp": lg.exponential(),
    "lse_0.5": lg.log_sum_exp(0.5),
    "lse_4": lg.log_sum_exp(4.0),
    "sigmoid": lg.sigmoid(),
    "tanh": lg.tanh(),
}
# Kinks: |x| at 0, ‖x‖ at 0, rectified at 0; inputs are kept away from them below.
KINKED = {
    "abs": lg.absolute(),
    "spherical": lg.spherical(),
    "rectified_power1": lg.rectified_power(1),
}
CONVEX = [k for k in SMOOTH if k != "power3"] + ["spherical"]


def _states(seed: int, batch: int, n: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, generator=g, dtype=torch.float64) * scale
    # Keep every coordinate ≥ 1e-3 away from 0 so kinked Lagrangians are differentiable.
    return torch.where(x.abs() < 1e-3, torch.full_like(x, 1e-3), x)


def _autograd(lag: lg.Lagrangian, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lag.lagrangian(x).sum(), x)
    return grad


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(SMOOTH | KINKED)),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 4),
    n=st.integers(1, 9),
    scale=st.sampled_from([0.1, 1.0, 5.0]),
)
def test_activation_is_gradient_of_lagrangian(name, seed, batch, n, scale):
    lag = (SMOOTH | KINKED)[name]
    x = _states(seed, batch, n, scale)
    assert lag.lagrangian(x).shape == (batch,)
    assert lag.activation(x).shape == (batch, n)
    torch.testing.assert_close(lag.activation(x), _autograd(lag, x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", CONVEX)
def test_hessian_is_psd(name):
    lag = (SMOOTH | KINKED)[name]
    for seed in range(6):
        x = _states(seed, 1, 5, 2.0)[0]
        hess = torch.autograd.functional.hessian(lambda y, lag=lag: lag.lagrangian(y[None])[0], x)
        eig = torch.linalg.eigvalsh(hess)
        assert eig.min() >= -1e-9 * max(1.0, float(eig.abs().max())), (name, eig)


def test_odd_power_is_not_convex():
    hess = torch.autograd.functional.hessian(
        lambda y: lg.power(3).lagrangian(y[None])[0], torch.tensor([-1.0, 2.0], dtype=torch.float64)
    )
    assert torch.linalg.eigvalsh(hess).min() < 0
    assert not lg.power(3).convex and lg.power(4).convex and lg.rectified_power(3).convex


def test_closed_forms():
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    assert lg.quadratic().lagrangian(x).item() == pytest.approx(0.5 * (1 + 4 + 0.25))
    assert lg.absolute().lagrangian(x).item() == pytest.approx(3.5)
    assert lg.power(3).lagrangian(x).item() == pytest.approx(1 - 8 + 0.125)
    assert lg.rectified_power(2).lagrangian(x).item() == pytest.approx(1 + 0.25)
    assert lg.exponential().lagrangian(x).item() == pytest.approx(
        math.exp(1) + math.exp(-2) + math.exp(0.5)
    )
    beta = 3.0
    lse = math.log(sum(math.exp(beta * t) for t in (1.0, -2.0, 0.5))) / beta
    assert lg.log_sum_exp(beta).lagrangian(x).item() == pytest.approx(lse)
    assert lg.spherical().lagrangian(x).item() == pytest.approx(math.sqrt(5.25))
    assert lg.sigmoid().lagrangian(x).item() == pytest.approx(
        sum(math.log1p(math.exp(t)) for t in (1.0, -2.0, 0.5))
    )
    assert lg.tanh().lagrangian(x).item() == pytest.approx(
        sum(math.log(math.cosh(t)) for t in (1.0, -2.0, 0.5))
    )


def test_large_inputs_stay_finite():
    x = torch.tensor([[800.0, -900.0]], dtype=torch.float64)
    assert torch.isfinite(lg.tanh().lagrangian(x)).all()
    assert lg.tanh().lagrangian(x).item() == pytest.approx(1700 - 2 * math.log(2))
    assert torch.isfinite(lg.log_sum_exp(10.0).lagrangian(x)).all()
    assert torch.isfinite(lg.sigmoid().lagrangian(x)).all()


def test_spherical_activation_at_origin_is_zero():
    x = torch.zeros(2, 4, dtype=torch.float64)
    assert torch.equal(lg.spherical().activation(x), torch.zeros_like(x))


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["power", "rectified_power", "exp"]),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_hidden_function_derivative(kind, n, seed):
    f = lg.hidden_function(kind, n)
    x = _states(seed, 3, 4, 1.5).requires_grad_(True)
    (grad,) = torch.autograd.grad(f.F(x).sum(), x)
    torch.testing.assert_close(f.dF(x.detach()), grad, rtol=1e-9, atol=1e-9)


def test_hidden_function_validates():
    with pytest.raises(InvalidParameterError):
        lg.hidden_function("cubic", 3)
    with pytest.raises(InvalidParameterError):
        lg.hidden_function("power", 0)
    with pytest.raises(InvalidParameterError):
        lg.log_sum_exp(0.0)
