"""math/merge.py: any split of Ξ into parts merges to the unsplit answer (tests/reference.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from lam_engine.math.merge import Partials, dense_partials, finish, merge
from tests import reference as ref


def _case(seed: int, n: int, b: int, d: int, dead: float):
    rng = np.random.default_rng(seed)
    xi = (rng.standard_normal((n, d)) / math.sqrt(d)).astype(np.float32)
    v = rng.standard_normal((b, d)).astype(np.float32)
    bias = np.where(rng.random(n) < dead, -np.inf, 0.0).astype(np.float32)
    return xi, v, bias


def _cuts(draw_points: list[int], n: int) -> list[int]:
    return sorted({0, n, *(p % (n + 1) for p in draw_points)})


def _check(out, lse, top_s, top_r, xi, v, beta, bias, k):
    want_out = ref.step(xi, v, beta, bias)
    want_lse = ref.logsumexp(ref.logits(xi, v, beta, bias))
    finite = np.isfinite(want_lse)
    assert np.array_equal(np.isfinite(lse.numpy()), finite)
    np.testing.assert_allclose(lse.numpy()[finite], want_lse[finite], rtol=2e-5, atol=2e-5 * beta)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=0, atol=2e-5)
    if k:
        h = ref.logits(xi, v, 1.0, bias)  # (B, N): ξ·v, −inf where hidden
        want = -np.sort(-h, axis=1)[:, : min(k, h.shape[1])]
        ok = np.isfinite(want)
        assert np.array_equal(np.isfinite(top_s.numpy()), ok)
        np.testing.assert_allclose(top_s.numpy()[ok], want[ok], rtol=1e-5, atol=1e-5)
        rows = top_r.numpy()
        assert np.all(rows[~ok] == -1)
        picked = np.take_along_axis(h, np.where(ok, rows, 0), axis=1)
        np.testing.assert_allclose(picked[ok], top_s.numpy()[ok], rtol=1e-5, atol=1e-5)


@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 300),
    b=st.integers(1, 4),
    beta=st.floats(0.1, 40.0),
    dead=st.sampled_from([0.0, 0.5, 1.0]),
    k=st.sampled_from([0, 1, 5]),
    points=st.lists(st.integers(0, 10_000), max_size=6),
    base2=st.booleans(),
)
def test_any_split_merges_to_the_unsplit_result(seed, n, b, beta, dead, k, points, base2):
    """Parts of any sizes (empty ones, wholly hidden ones included), merged in one call
    or folded one by one as the chunked kernel does, give the oracle's answer."""
    xi, v, bias = _case(seed, n, b, 8, dead)
    cuts = _cuts(points, n)
    xi_t, v_t, bias_t = torch.from_numpy(xi), torch.from_numpy(v), torch.from_numpy(bias)
    parts = []
    for lo, hi in itertools.pairwise(cuts):
        p = dense_partials(xi_t[lo:hi], v_t, beta, bias=bias_t[lo:hi], top_k=k, row0=lo)
        if base2:  # the same partials with m in base-2 units
            p.m = p.m / math.log(2.0)
        parts.append(p)
    merged = merge(parts, k, base2=base2)
    _check(*finish(merged, base2=base2), merged.top_scores, merged.top_rows, xi, v, beta, bias, k)
    kk = min(k, n)  # as the chunked kernel asks: k ≤ N
    acc = Partials.empty(b, 8, kk, device=xi_t.device)
    for p in parts:
        acc = merge((acc, p), kk, base2=base2)
    _check(*finish(acc, base2=base2), acc.top_scores, acc.top_rows, xi, v, beta, bias, k)


@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 200),
    beta=st.floats(0.5, 20.0),
    points=st.lists(st.integers(0, 10_000), max_size=4),
)
def test_normalized_parts_merge_like_raw_ones(seed, n, beta, points):
    """A part given as (out, lse), as the fused kernel's shards are, merges exactly."""
    xi, v, bias = _case(seed, n, 3, 6, 0.3)
    cuts = _cuts(points, n)
    parts = []
    for lo, hi in itertools.pairwise(cuts):
        raw = dense_partials(
            torch.from_numpy(xi[lo:hi]),
            torch.from_numpy(v),
            beta,
            bias=torch.from_numpy(bias[lo:hi]),
        )
        parts.append(Partials.of_softmax(*finish(raw)))
    _check(*finish(merge(parts)), None, None, xi, v, beta, bias, 0)


def test_an_empty_part_with_garbage_output_does_not_poison_the_merge():
    xi, v, bias = _case(0, 50, 2, 4, 0.0)
    good = dense_partials(torch.from_numpy(xi), torch.from_numpy(v), 3.0)
    nan = torch.full((2,), -math.inf)
    bad = Partials.of_softmax(torch.full((2, 4), math.nan), nan)
    out, lse = finish(merge([bad, good, bad]))
    _check(out, lse, None, None, xi, v, 3.0, bias, 0)
