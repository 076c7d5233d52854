"""Separations Δ_i, the Ramsauer fixed-point condition and β_min."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.errors import InvalidParameterError
from lam_engine.math.diagnostics import (
    beta_min,
    branch_beta,
    fixed_point_threshold,
    max_norm,
    separation_report,
    separations,
)
from tests.harness.fixtures import one_torch_thread as one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _np_separations(xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = xi.shape[0]
    delta, nearest = np.empty(n), np.empty(n, dtype=np.int64)
    for i in range(n):
        dots = [(float(xi[i] @ xi[j]), j) for j in range(n) if j != i]
        best = max(d for d, _ in dots)
        nearest[i] = min(j for d, j in dots if d == best)
        delta[i] = float(xi[i] @ xi[i]) - best
    return delta, nearest


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 30),
    d=st.integers(1, 6),
    chunk=st.integers(1, 7),
    integer=st.booleans(),
)
def test_separations_match_brute_force(seed, n, d, chunk, integer):
    g = torch.Generator().manual_seed(seed)
    # Small integer entries force ties in max_j ξ_i·ξ_j (lowest j wins) and duplicates (Δ = 0).
    xi = (
        torch.randint(-2, 3, (n, d), generator=g).float()
        if integer
        else torch.randn(n, d, generator=g)
    )
    delta, nearest = separations(xi, chunk_rows=chunk)
    ref_delta, ref_nearest = _np_separations(xi.double().numpy())
    assert delta.dtype == torch.float64 and nearest.dtype == torch.int64
    np.testing.assert_allclose(delta.numpy(), ref_delta, rtol=1e-12, atol=1e-12)
    if integer:  # exact arithmetic: the argmax is well defined
        np.testing.assert_array_equal(nearest.numpy(), ref_nearest)


def test_separations_of_orthogonal_and_special_banks():
    eye = torch.eye(5, dtype=torch.float64) * torch.arange(1, 6, dtype=torch.float64)[:, None]
    delta, _ = separations(eye)
    torch.testing.assert_close(delta, torch.arange(1, 6, dtype=torch.float64) ** 2)  # ξ_i·ξ_j = 0
    dup = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]])
    delta, nearest = separations(dup)
    assert delta[0] == 0 and delta[1] == 0 and nearest[0] == 1 and nearest[1] == 0
    delta, nearest = separations(torch.ones(1, 3))
    assert delta.item() == math.inf and nearest.item() == -1
    assert max_norm(eye) == 5.0


def test_threshold_closed_form():
    n, beta, m = 10, 3.0, 2.0
    assert fixed_point_threshold(n, beta, m) == pytest.approx(
        2 / (beta * n) + math.log(2 * 9 * 10 * beta * 4) / beta
    )
    assert fixed_point_threshold(1, beta, m) == -math.inf
    with pytest.raises(InvalidParameterError):
        fixed_point_threshold(3, 0.0, 1.0)


def test_threshold_falls_beyond_branch_point():
    n, m = 20, 1.5
    b0 = branch_beta(n, m)
    values = [fixed_point_threshold(n, b0 * 1.1**k, m) for k in range(60)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert fixed_point_threshold(n, b0 * 0.9, m) < fixed_point_threshold(n, b0, m)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 100_000),
    m=st.floats(0.05, 100.0),
    frac=st.floats(1e-6, 1.0),
)
def test_beta_min_is_tight(n, m, frac):
    delta_min = frac * 2 * m * m  # every Δ lies in (0, 2M²]
    beta = beta_min(delta_min, n, m)
    assert beta is not None and beta > branch_beta(n, m)
    assert fixed_point_threshold(n, beta, m) <= delta_min
    assert fixed_point_threshold(n, beta * (1 - 1e-9), m) > delta_min


def test_beta_min_edge_cases():
    assert beta_min(None, 5, 1.0) is None
    assert beta_min(0.0, 5, 1.0) is None
    assert beta_min(-1.0, 5, 1.0) is None
    assert beta_min(math.inf, 1, 1.0) == 0.0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 40), d=st.integers(2, 12))
def test_report_at_and_below_beta_min(seed, n, d):
    g = torch.Generator().manual_seed(seed)
    xi = torch.randn(n, d, generator=g, dtype=torch.float64)
    xi[0] = xi[1]  # one duplicate pair: never separable
    delta, _ = separations(xi)
    m = max_norm(xi)
    separable = delta > 0
    report = separation_report(delta, m, 1.0, n)
    assert report.n_separable == int(separable.sum())
    if report.beta_min is None:
        assert report.n_separable == 0
        return
    at = separation_report(delta, m, report.beta_min, n)
    assert torch.equal(at.meets, separable)
    assert at.n_meeting == at.n_separable
    below = separation_report(delta, m, report.beta_min * (1 - 1e-7), n)
    assert below.n_meeting < below.n_separable
    # failing: every memory that does not meet, worst margin first; duplicates included.
    margin = delta - below.threshold
    assert set(below.failing.tolist()) == set((~below.meets).nonzero().flatten().tolist())
    assert {0, 1} <= set(below.failing.tolist())
    assert (margin[below.failing][1:] >= margin[below.failing][:-1]).all()


def test_report_counts_nothing_on_rising_branch():
    """Below β_* the sphere of radius 1/(βNM) ≥ 2M says nothing: no memory is counted."""
    eye = torch.eye(4, dtype=torch.float64)
    delta, _ = separations(eye)
    tiny = branch_beta(4, 1.0) / 1e6
    assert fixed_point_threshold(4, tiny, 1.0) < 0  # the raw inequality would hold
    report = separation_report(delta, 1.0, tiny, 4)
    assert report.n_meeting == 0 and report.n_separable == 4
    big = separation_report(delta, 1.0, 1000.0, 4)
    assert big.n_meeting == 4 and big.failing.numel() == 0
