"""Models A, B, C: numpy references, autograd gradients, energy descent, recall, fixed points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.errors import DimensionMismatchError, EmptyBankError, InvalidParameterError
from lam_engine.math.lagrangians import hidden_function
from lam_engine.math.models import (
    model_a_energy,
    model_a_gradient,
    model_a_sweep,
    model_b_energy,
    model_b_gradient,
    model_b_retrieve,
    model_b_step,
    model_c_energy,
    model_c_gradient,
    model_c_step,
)
from tests import reference as oracle
from tests.harness.fixtures import one_torch_thread as one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


F64 = torch.float64
CONVEX_F = [("rectified_power", 2), ("rectified_power", 3), ("exp", 1), ("power", 2), ("power", 4)]


def _bank(seed: int, n: int, d: int, batch: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    xi = torch.randn(n, d, generator=g, dtype=F64) * scale
    v = torch.randn(batch, d, generator=g, dtype=F64) * scale
    return xi, v


def _signs(seed: int, n: int, d: int, batch: int):
    g = torch.Generator().manual_seed(seed)
    xi = (torch.randint(0, 2, (n, d), generator=g) * 2 - 1).to(F64)
    sigma = (torch.randint(0, 2, (batch, d), generator=g) * 2 - 1).to(F64)
    return xi, sigma


def _flip(patterns: torch.Tensor, frac: float, g: torch.Generator) -> torch.Tensor:
    """Flip round(frac·d) distinct bits of every row."""
    t, d = patterns.shape
    k = int(frac * d)
    idx = torch.rand(t, d, generator=g).argsort(dim=1)[:, :k]
    return patterns.scatter(1, idx, -patterns.gather(1, idx))


# ---------------------------------------------------------------- Model B vs numpy


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 12),
    d=st.integers(1, 8),
    batch=st.integers(1, 4),
    beta=st.floats(0.01, 50.0),
)
def test_model_b_matches_numpy(seed, n, d, batch, beta):
    xi, v = _bank(seed, n, d, batch)
    np.testing.assert_allclose(
        model_b_energy(xi, v, beta).numpy(),
        oracle.energy(xi.numpy(), v.numpy(), beta),
        rtol=1e-10,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        model_b_step(xi, v, beta).numpy(),
        oracle.step(xi.numpy(), v.numpy(), beta),
        rtol=1e-9,
        atol=1e-12,
    )


def test_model_b_float32_close_to_float64():
    xi, v = _bank(3, 50, 16, 4)
    e32 = model_b_energy(xi.float(), v.float(), 2.0)
    assert e32.dtype == F64
    torch.testing.assert_close(e32, model_b_energy(xi, v, 2.0), rtol=1e-5, atol=1e-4)
    s32 = model_b_step(xi.float(), v.float(), 2.0)
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), model_b_step(xi, v, 2.0), rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 10),
    d=st.integers(1, 6),
    beta=st.floats(0.05, 20.0),
)
def test_model_b_gradient_is_autograd_of_energy(seed, n, d, beta):
    xi, v = _bank(seed, n, d, 3)
    x = v.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model_b_energy(xi, x, beta).sum(), x)
    torch.testing.assert_close(model_b_gradient(xi, v, beta), grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(model_b_step(xi, v, beta), v - grad, rtol=1e-9, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 20),
    d=st.integers(1, 8),
    beta=st.floats(0.01, 30.0),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
)
def test_model_b_energy_never_increases(seed, n, d, beta, scale):
    xi, v = _bank(seed, n, d, 4, scale)
    energy = model_b_energy(xi, v, beta)
    for _ in range(6):
        v = model_b_step(xi, v, beta)
        nxt = model_b_energy(xi, v, beta)
        assert (nxt <= energy + 1e-10 * (1 + energy.abs())).all()
        energy = nxt


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 20),
    d=st.integers(1, 8),
    beta=st.floats(0.01, 30.0),
)
def test_model_b_energy_with_constants_is_nonnegative(seed, n, d, beta):
    xi, v = _bank(seed, n, d, 4, 2.0)
    v = torch.cat([v, xi[:1], model_b_step(xi, v, beta)])  # also at a memory and after a step
    energy = model_b_energy(xi, v, beta, constants=True)
    assert (energy >= -1e-9).all()
    m = xi.norm(dim=1).max()
    torch.testing.assert_close(
        energy - model_b_energy(xi, v, beta),
        torch.full_like(energy, math.log(n) / beta + 0.5 * m * m),
    )


# ---------------------------------------------------------------- masked retrieval


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 5),
    normalize=st.booleans(),
    shared_mask=st.booleans(),
)
def test_masked_retrieval_clamps_known_features(seed, steps, normalize, shared_mask):
    xi, v = _bank(seed, 15, 6, 4)
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(1 if shared_mask else 4, 6, generator=g) < 0.5
    mask = mask[0] if shared_mask else mask
    state, taken, converged = model_b_retrieve(
        xi, v, 2.0, mask=mask, steps=steps, tol=0.0, normalize=normalize
    )
    known = mask.expand(4, 6)
    cue = torch.where(known, v, 0.0)
    if normalize:
        cue = cue / cue.norm(dim=1, keepdim=True).clamp_min(1e-300)
    assert torch.equal(state[known], cue[known])
    # With tol = 0 only a state that did not move converges: e.g. one with every feature known.
    assert (taken[~converged] == steps).all()
    assert converged[known.all(dim=1)].all()
    # The oracle's query: zero unknowns, (normalize), step, clamp — `steps` times.
    want, want_taken, _ = oracle.retrieve(
        xi.numpy(), v.numpy(), 2.0, steps=steps, tol=0.0, mask=mask.numpy(), normalize_cue=normalize
    )
    np.testing.assert_allclose(state.numpy(), want, rtol=1e-9, atol=1e-12)
    assert taken.tolist() == want_taken.tolist()


def test_masked_retrieval_ignores_unknown_values():
    xi, v = _bank(1, 10, 5, 2)
    mask = torch.tensor([True, False, True, False, True])
    other = v.clone()
    other[:, ~mask] = 1e6
    a = model_b_retrieve(xi, v, 1.0, mask=mask, steps=3)
    b = model_b_retrieve(xi, other, 1.0, mask=mask, steps=3)
    torch.testing.assert_close(a.state, b.state)


def test_retrieval_stops_each_state_at_tol():
    xi, _ = _signs(0, 4, 16, 1)
    far = torch.zeros(1, 16, dtype=F64)  # the mean of the memories: moves on the first step
    v = torch.cat([xi[:1], far])  # a memory is (numerically) a fixed point at β = 10
    state, taken, converged = model_b_retrieve(xi, v, 10.0, steps=50, tol=1e-9)
    assert taken[0] == 1 and converged[0]
    assert 1 < taken[1] <= 50
    torch.testing.assert_close(state[0], xi[0])


def test_retrieval_validates():
    xi, v = _bank(0, 4, 3, 2)
    with pytest.raises(InvalidParameterError):
        model_b_retrieve(xi, v, 1.0, steps=0)
    with pytest.raises(InvalidParameterError):
        model_b_retrieve(xi, v, -1.0)
    with pytest.raises(DimensionMismatchError):
        model_b_retrieve(xi, v, 1.0, mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(DimensionMismatchError):
        model_b_step(xi, v[:, :2], 1.0)
    with pytest.raises(EmptyBankError):
        model_b_energy(xi[:0], v, 1.0)


# ---------------------------------------------------------------- Models A and C


def _np_sweep(xi: np.ndarray, sigma: np.ndarray, f, order) -> np.ndarray:
    s = sigma.copy()
    for b in range(s.shape[0]):
        for i in order:
            rest = xi @ s[b] - xi[:, i] * s[b, i]
            up = [f(x + r) for x, r in zip(xi[:, i], rest, strict=True)]
            down = [f(-x + r) for x, r in zip(xi[:, i], rest, strict=True)]
            diff = sum(up) - sum(down)
            # Ties (within rounding) keep σ_i.
            if abs(diff) > 1e-12 * (sum(map(abs, up)) + sum(map(abs, down))):
                s[b, i] = np.sign(diff)
    return s


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["power", "rectified_power", "exp"]),
    power=st.integers(1, 5),
    n=st.integers(1, 12),
    d=st.integers(2, 10),
)
def test_model_a_sweep_matches_reference_and_descends(seed, kind, power, n, d):
    xi, sigma = _signs(seed, n, d, 3)
    f_hidden = hidden_function(kind, power)
    order = list(np.random.default_rng(seed).permutation(d))
    out = model_a_sweep(xi, sigma, f_hidden, order=order)
    f_np = {
        "power": lambda x: x**power,
        "rectified_power": lambda x: max(x, 0) ** power,
        "exp": math.exp,
    }
    ref = _np_sweep(xi.numpy(), sigma.numpy(), f_np[kind], order)
    np.testing.assert_array_equal(out.numpy(), ref)
    # Each update picks the lower-energy σ_i, so E never increases (for any F).
    before = model_a_energy(xi, sigma, f_hidden)
    assert (model_a_energy(xi, out, f_hidden) <= before + 1e-12 * (1 + before.abs())).all()


def test_model_a_sweep_exp_is_overflow_safe():
    xi, _ = _signs(4, 50, 128, 1)
    g = torch.Generator().manual_seed(0)
    cue = _flip(xi[:8], 0.1, g)  # overlaps ≈ 100: e^100 per term, fine in log space
    big = torch.cat([xi, xi[:1] * 8.0])  # one memory with overlaps up to 1024 ≫ 709
    out = model_a_sweep(big, cue, hidden_function("exp"))
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], xi[0])


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    f=st.sampled_from(CONVEX_F),
    n=st.integers(1, 10),
    d=st.integers(2, 8),
)
def test_model_c_energy_never_increases(seed, f, n, d):
    xi, v = _bank(seed, n, d, 4, 0.7)
    f_hidden = hidden_function(*f)
    energy = model_c_energy(xi, v, f_hidden)
    for _ in range(5):
        v = model_c_step(xi, v, f_hidden, alpha=0.5)
        nxt = model_c_energy(xi, v, f_hidden)
        assert (nxt <= energy + 1e-10 * (1 + energy.abs())).all()
        energy = nxt


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["power", "rectified_power", "exp"]),
    power=st.integers(2, 4),
)
def test_models_a_c_gradients_are_autograd(seed, kind, power):
    xi, v = _bank(seed, 6, 5, 3, 0.8)
    f_hidden = hidden_function(kind, power)
    for energy, gradient in (
        (model_a_energy, model_a_gradient),
        (model_c_energy, model_c_gradient),
    ):
        x = v.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(xi, x, f_hidden).sum(), x)
        torch.testing.assert_close(gradient(xi, v, f_hidden), grad, rtol=1e-8, atol=1e-10)


def test_model_c_energy_depends_on_direction_only():
    xi, v = _bank(2, 5, 4, 3)
    f_hidden = hidden_function("rectified_power", 3)
    torch.testing.assert_close(
        model_c_energy(xi, v, f_hidden), model_c_energy(xi, 7.5 * v, f_hidden)
    )
    g = v / v.norm(dim=1, keepdim=True)
    ref = -(torch.clamp(g @ xi.T, min=0) ** 3).sum(1)
    torch.testing.assert_close(model_c_energy(xi, v, f_hidden), ref)
    step = model_c_step(xi, v, f_hidden, alpha=2.0)
    torch.testing.assert_close(step, 3 * torch.clamp(g @ xi.T, min=0) ** 2 @ xi / 2.0)


# ---------------------------------------------------------------- recall acceptance


@pytest.fixture(scope="module")
def recall_problem():
    """200 cues: random ±1 patterns, d = 128, N = 1000, 30 % of the bits flipped."""
    g = torch.Generator().manual_seed(2020)
    xi = (torch.randint(0, 2, (1000, 128), generator=g) * 2 - 1).to(F64)
    target = torch.randint(0, 1000, (200,), generator=g)
    return xi, target, _flip(xi[target], 0.3, g)


def test_recall_model_b_beta_1(recall_problem):
    xi, target, cue = recall_problem
    exact = (torch.sign(model_b_step(xi, cue, 1.0)) == xi[target]).all(dim=1)
    assert exact.double().mean() >= 0.99


def test_recall_model_b_small_beta_fails(recall_problem):
    xi, target, cue = recall_problem
    exact = (torch.sign(model_b_step(xi, cue, 1 / math.sqrt(128))) == xi[target]).all(dim=1)
    assert exact.double().mean() <= 0.2


def test_recall_model_a_exp_one_sweep(recall_problem):
    xi, target, cue = recall_problem
    out = model_a_sweep(xi.float(), cue.float(), hidden_function("exp"))
    assert (out == xi[target].float()).all(dim=1).double().mean() >= 0.98


def test_recall_model_b_normalized_bank():
    """2000 × 128 bank of ±1/√d patterns; cues: 20 % of bits flipped plus Gaussian noise
    (σ = 0.3/√d per feature), normalized as the bank would; β = 32, up to 3 steps."""
    g = torch.Generator().manual_seed(7)
    d = 128
    xi = (torch.randint(0, 2, (2000, d), generator=g) * 2 - 1).float() / math.sqrt(d)
    target = torch.randint(0, 2000, (64,), generator=g)
    cue = _flip(xi[target], 0.2, g) + 0.3 / math.sqrt(d) * torch.randn(64, d, generator=g)
    state, _, converged = model_b_retrieve(xi, cue, 32.0, steps=3, tol=1e-6, normalize=True)
    err = (state - xi[target]).norm(dim=1)
    assert int((err < 1e-3).sum()) == 64
    assert converged.all()


# ---------------------------------------------------------------- separation lemma


def _separated_bank(seed: int, n: int, d: int):
    """Random ±1/√d patterns: Δ_i ≈ 1 − O(√(log N / d)) > 0."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n, d), generator=g) * 2 - 1).to(F64) / math.sqrt(d)


def _threshold(n: int, beta: float, m: float) -> float:
    return 2 / (beta * n) + math.log(2 * (n - 1) * n * beta * m * m) / beta


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 40), d=st.sampled_from([32, 64, 128]))
def test_separated_memories_are_fixed_points(seed, n, d):
    """If Δ_i ≥ 2/(βN) + β⁻¹ ln(2(N−1)NβM²), then
    (a) ‖step(ξ_i) − ξ_i‖ ≤ 2M(N−1)e^{−βΔ_i} ≤ e^{−2/N}/(βNM) < 1/(βNM)  (proved in docs/math.md:
        1 − p_i ≤ (N−1)e^{−βΔ_i} and ‖ξ_j − ξ_i‖ ≤ 2M), and
    (b) iterating the step from ξ_i converges to a fixed point inside the sphere of radius
        1/(βNM) around ξ_i (Ramsauer et al.'s theorem: the step maps that sphere into itself)."""
    xi = _separated_bank(seed, n, d)
    gram = xi @ xi.T
    delta = gram.diag() - gram.fill_diagonal_(-math.inf).max(dim=1).values
    m = float(xi.norm(dim=1).max())
    beta = 12.0
    while not all(float(x) >= _threshold(n, beta, m) for x in delta):
        beta *= 1.5
    radius = 1 / (beta * n * m)
    one = (model_b_step(xi, xi, beta) - xi).norm(dim=1)
    bound = 2 * m * (n - 1) * torch.exp(-beta * delta)
    assert (one <= bound * (1 + 1e-9) + 1e-15).all()
    assert (bound <= math.exp(-2 / n) * radius * (1 + 1e-9)).all()
    v = xi.clone()
    for _ in range(50):
        v = model_b_step(xi, v, beta)
    torch.testing.assert_close(model_b_step(xi, v, beta), v, rtol=0, atol=1e-12)
    assert ((v - xi).norm(dim=1) <= radius).all()


def test_poorly_separated_memory_is_not_a_fixed_point():
    """The converse direction is not a theorem, but a memory far from the condition (Δ_0 =
    0.1, β = 1) is visibly not a fixed point: the step mixes it with its neighbour."""
    xi = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=F64)
    out = model_b_step(xi, xi[:1], 1.0)
    assert (out - xi[:1]).norm() > 0.1
