"""The native C pass (lam_engine/kernels/native.py) against the float64 numpy oracle, the torch
passes it replaces, and its fallbacks."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.kernels import cpu, model_b_pass, native
from tests.unit.test_kernels import check_pass

HALF_TOL = {torch.float32: 2e-5, torch.float16: 2e-5, torch.bfloat16: 2e-5}
needs_native = pytest.mark.skipif(not native.available(), reason="native pass not built here")


def test_builds_where_a_compiler_and_the_cpu_allow():
    """On an x86-64 machine with AVX2/FMA/F16C and a C compiler the pass must be there:
    a broken build must not hide behind the fallback."""
    if native.cpu_ok() and (shutil.which("cc") or shutil.which("gcc")):
        assert native.available(), "the native pass should have been built"
    else:
        assert not native.available()


def _case(seed: int, n: int, b: int, d: int, dead: float, strengths: bool, dtype: torch.dtype):
    rng = np.random.default_rng(seed)
    xi = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32) / math.sqrt(d))
    xi = xi.to(dtype)
    v = torch.from_numpy(rng.standard_normal((b, d)).astype(np.float32))
    bias = np.where(rng.random(n) < dead, -np.inf, 0.0)
    if strengths:
        bias = bias + np.log(rng.uniform(0.05, 3.0, n))
    return xi, v, bias.astype(np.float32)


@needs_native
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 700),
    b=st.integers(1, 20),
    d=st.integers(1, 40),
    beta=st.floats(0.05, 60.0),
    dead=st.sampled_from([0.0, 0.3, 1.0]),
    strengths=st.booleans(),
    k=st.sampled_from([0, 1, 5, 40]),
    need_out=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
)
def test_matches_the_float64_reference(seed, n, b, d, beta, dead, strengths, k, need_out, dtype):
    """Every dtype against the oracle on the stored values (half rows widened exactly), with
    hidden rows, log-strengths, every tail of d (not a multiple of 8 or 16) and of N (not a
    multiple of the 128-row block)."""
    xi, v, bias = _case(seed, n, b, d, dead, strengths, dtype)
    called = []
    real = native.native_pass
    native.native_pass = lambda *a: called.append(1) or real(*a)  # type: ignore[assignment]
    try:
        res = model_b_pass(xi, v, beta, bias=torch.from_numpy(bias), top_k=k, need_out=need_out)
    finally:
        native.native_pass = real  # type: ignore[assignment]
    assert called == [1]
    xi64 = xi.float().numpy().astype(np.float64)
    v64 = v.to(dtype).float().numpy().astype(np.float64)  # the state as the dtype holds it
    if not strengths:
        check_pass(res, xi64, v64, beta, bias, k, rtol=HALF_TOL[dtype])
        return
    # With log-strengths the oracle's lse and state hold; the top-k is by weight, β h + bias.
    check_pass(res, xi64, v64, beta, bias, 0, rtol=HALF_TOL[dtype])
    h = v64 @ xi64.T  # (B, N)
    key = np.where(np.isfinite(bias), h + bias / beta, -np.inf)
    kk = min(k, n)
    order = np.argsort(-key, axis=1, kind="stable")[:, :kk]
    want_key = np.take_along_axis(key, order, axis=1)
    rows = res.top_rows.numpy()
    ok = rows >= 0
    assert np.array_equal(ok, np.isfinite(want_key))
    got_key = np.take_along_axis(key, np.where(ok, rows, 0), axis=1)
    np.testing.assert_allclose(got_key[ok], want_key[ok], rtol=1e-5, atol=1e-5)
    got_h = np.take_along_axis(h, np.where(ok, rows, 0), axis=1)
    np.testing.assert_allclose(res.top_scores.numpy()[ok], got_h[ok], rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("b", [1, 3, 16, 33])
def test_agrees_with_the_torch_passes_on_a_large_bank(monkeypatch, dtype, b):
    """N = 20 011 (blocks and thread ranges with remainders), d = 384, several threads."""
    xi, v, bias = _case(7, 20_011, b, 384, 0.1, True, dtype)
    xi_n = torch.nn.functional.normalize(xi.float(), dim=1).to(dtype)
    v = torch.nn.functional.normalize(v, dim=1)
    bias_t = torch.from_numpy(bias)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    got = model_b_pass(xi_n, v, 32.0, bias=bias_t, top_k=10)
    monkeypatch.setattr(native, "_enabled", False)
    # The exact torch pass (chunks widened to float32): on a CPU with bfloat16 GEMMs the
    # default at b ≥ 32 weights Ξᵀ e with rounded e (≈ 0.4 %), too loose for this check.
    monkeypatch.setattr(cpu, "half_gemm_ok", lambda *a, **k: False)
    want = model_b_pass(xi_n, v, 32.0, bias=bias_t, top_k=10)
    torch.testing.assert_close(got.lse, want.lse, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got.out, want.out, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(got.top_scores, want.top_scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.top_rows, want.top_rows)


@needs_native
def test_thread_ranges_merge_exactly(monkeypatch):
    """Any split of the rows over threads gives the one-thread answer to float32 rounding."""
    xi, v, bias = _case(3, 5_000, 4, 64, 0.2, True, torch.float32)
    bias_t = torch.from_numpy(bias)
    monkeypatch.setattr(native, "_MACS_PER_THREAD", 1)
    runs = []
    for threads in (1, 2, 5, 39):
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        runs.append(model_b_pass(xi, v, 8.0, bias=bias_t, top_k=7))
    for r in runs[1:]:
        torch.testing.assert_close(r.lse, runs[0].lse, rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(r.out, runs[0].out, rtol=1e-5, atol=1e-6)
        assert torch.equal(r.top_rows, runs[0].top_rows)


@needs_native
def test_a_bank_wholly_hidden_has_no_support():
    xi = torch.randn(300, 16)
    bias = torch.full((300,), -math.inf)
    res = model_b_pass(xi, torch.randn(2, 16), 4.0, bias=bias, top_k=3)
    assert torch.all(torch.isneginf(res.lse))
    assert torch.all(res.out == 0)
    assert torch.all(res.top_rows == -1) and torch.all(torch.isneginf(res.top_scores))


def test_switched_off_it_is_never_called(monkeypatch):
    monkeypatch.setattr(native, "_enabled", False)
    monkeypatch.setattr(native, "native_pass", lambda *a: pytest.fail("native pass called"))
    res = model_b_pass(torch.randn(50, 8), torch.randn(1, 8), 2.0, top_k=2)
    assert res.top_rows.shape == (1, 2)


def test_no_compiler_means_the_torch_passes(monkeypatch, tmp_path):
    """A machine without a C compiler (or where it fails) builds nothing and loads nothing."""
    monkeypatch.setenv("LAM_NATIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert native.build() is None or not native.cpu_ok()
    monkeypatch.setenv("CC", "false")  # a compiler that fails
    assert native.build() is None
    assert not list((tmp_path / "cache").glob("*.so*"))


def test_gpu_tensors_stay_on_the_torch_passes():
    xi = torch.randn(10, 4)
    assert native.usable(xi, torch.randn(1, 4)) == native.available()
    assert not native.usable(xi.t(), torch.randn(1, 10))  # not contiguous
    assert not native.usable(xi.double(), torch.randn(1, 4).double())


@needs_native
def test_a_logit_beyond_float32_gives_the_torch_passes_inf(monkeypatch):
    """β ξ·v = +inf: the C pass hands over to the torch passes, whose inf lse and nan state
    the callers refuse as numeric_overflow (the C pass alone would report no support)."""
    xi = torch.tensor([[1e19, 1e19]])
    v = torch.tensor([[1e19, 1.1e19]])
    got = model_b_pass(xi, v, 100.0, top_k=1)
    monkeypatch.setattr(native, "_enabled", False)
    want = model_b_pass(xi, v, 100.0, top_k=1)
    assert torch.isposinf(got.lse).all() and torch.isposinf(want.lse).all()
    assert torch.isnan(got.out).all() and torch.isnan(want.out).all()
