"""Model B pass (lam_engine.kernels) against an independent float64 numpy reference."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine import kernels
from lam_engine.kernels import candidate_pass, chunk_rows_for, model_b_pass

HALF_TOL = {torch.float16: 4e-3, torch.bfloat16: 2e-2}  # relative, ~4 ulp of the dtype


def reference(
    xi: np.ndarray, v: np.ndarray, beta: float, bias: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense float64 softmax: (out (B, d), lse (B,), h (B, N) with hidden rows at -inf)."""
    h = v.astype(np.float64) @ xi.astype(np.float64).T
    if bias is not None:
        h = h + bias[None, :]
    logits = beta * h
    m = logits.max(axis=1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(logits - m_safe)
    s = p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.where(s[:, 0] > 0, m_safe[:, 0] + np.log(s[:, 0]), -np.inf)
        out = np.where(s > 0, (p / np.where(s > 0, s, 1)) @ xi.astype(np.float64), 0.0)
    return out, lse, h


def make_case(seed: int, n: int, b: int, d: int, dead_frac: float):
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n, d)).astype(np.float32) / math.sqrt(d)
    v = rng.standard_normal((b, d)).astype(np.float32)
    bias = np.where(rng.random(n) < dead_frac, -np.inf, 0.0).astype(np.float32)
    xi[np.isinf(bias)] = 0.0  # as the bank stores tombstones
    return xi, v, bias


def check_pass(res, xi64, v64, beta, bias, k, rtol):
    out, lse, h = reference(xi64, v64, beta, bias)
    scale = max(1.0, float(np.abs(out).max()))
    np.testing.assert_allclose(res.out.numpy(), out, rtol=0, atol=rtol * scale)
    finite = np.isfinite(lse)
    assert np.array_equal(np.isfinite(res.lse.numpy()), finite)
    np.testing.assert_allclose(res.lse.numpy()[finite], lse[finite], rtol=rtol, atol=rtol * beta)
    assert res.out.dtype == torch.float32 and res.lse.dtype == torch.float32
    if k:
        want = torch.topk(torch.from_numpy(h), min(k, h.shape[1]), dim=1).values.numpy()
        got = res.top_scores.numpy()
        assert got.shape == want.shape
        assert np.array_equal(np.isfinite(got), np.isfinite(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=rtol)
        rows = res.top_rows.numpy()
        assert np.all(rows[~ok] == -1)
        # The rows are the ones whose scores were reported.
        picked = np.take_along_axis(h, np.where(ok, rows, 0), axis=1)
        np.testing.assert_allclose(picked[ok], got[ok], rtol=rtol, atol=rtol)
        if bias is not None:
            assert np.all(np.isfinite(bias[rows[ok]]))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 3000),
    b=st.integers(1, 9),
    d=st.integers(1, 24),
    beta=st.floats(0.05, 60.0),
    dead=st.sampled_from([0.0, 0.3, 0.9, 1.0]),
    k=st.sampled_from([0, 1, 5, 40]),
    chunk_bytes=st.sampled_from([1, 1 << 14, 64 << 20]),
)
def test_float32_matches_float64_reference(seed, n, b, d, beta, dead, k, chunk_bytes):
    xi, v, bias = make_case(seed, n, b, d, dead)
    bias_t = torch.from_numpy(bias) if dead > 0 else None
    res = model_b_pass(
        torch.from_numpy(xi),
        torch.from_numpy(v),
        beta,
        bias=bias_t,
        top_k=k,
        chunk_bytes=chunk_bytes,
    )
    check_pass(res, xi, v, beta, bias if dead > 0 else None, k, rtol=2e-5)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 2500),
    b=st.integers(1, 6),
    beta=st.floats(0.1, 30.0),
    dead=st.sampled_from([0.0, 0.5, 1.0]),
    k=st.sampled_from([0, 3]),
)
def test_chunked_path_matches_reference(seed, n, b, beta, dead, k):
    """The online-softmax path (used for top-k, and for everything on a GPU) on its own."""
    xi, v, bias = make_case(seed, n, b, 16, dead)
    bias_t = torch.from_numpy(bias) if dead > 0 else None
    res = kernels._chunked_pass(
        torch.from_numpy(xi), torch.from_numpy(v), beta, bias_t, min(k, n), 1 << 12
    )
    check_pass(res, xi, v, beta, bias if dead > 0 else None, k, rtol=2e-5)


def test_sharded_fused_path_with_remainder_and_dead_shard(monkeypatch):
    """Ξ split into shards (+ n mod S leftover rows), one shard wholly tombstoned."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    n = 4 * 1024 * 4 + 5
    xi, v, bias = make_case(3, n, 3, 8, 0.2)
    assert kernels._shards_for(3, n) == 16
    rows = n // 16
    bias[:rows] = -np.inf  # shard 0 entirely hidden
    xi[:rows] = 0.0
    res = model_b_pass(torch.from_numpy(xi), torch.from_numpy(v), 7.0, bias=torch.from_numpy(bias))
    check_pass(res, xi, v, 7.0, bias, 0, rtol=2e-5)
    everything_dead = np.full(n, -np.inf, dtype=np.float32)
    res = model_b_pass(
        torch.from_numpy(xi),
        torch.from_numpy(v),
        7.0,
        bias=torch.from_numpy(everything_dead),
        top_k=2,
    )
    assert torch.all(torch.isneginf(res.lse)) and torch.all(res.out == 0)
    assert torch.all(res.top_rows == -1) and torch.all(torch.isneginf(res.top_scores))
    res0 = model_b_pass(
        torch.from_numpy(xi), torch.from_numpy(v), 7.0, bias=torch.from_numpy(everything_dead)
    )
    assert torch.all(torch.isneginf(res0.lse)) and torch.all(res0.out == 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("path", ["auto", "chunked"])
@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 2000),
    beta=st.floats(0.5, 20.0),
    k=st.sampled_from([0, 4]),
)
def test_half_memories_accumulate_in_float32(dtype, path, seed, n, beta, k):
    """Half-precision memories: results in float32, within the dtype's rounding of the
    float64 softmax over the *stored* (rounded) values, and far better than a softmax
    accumulated in the half dtype itself."""
    xi, v, bias = make_case(seed, n, 4, 16, 0.2)
    xi_h = torch.from_numpy(xi).to(dtype)
    xi_stored = xi_h.float().numpy()
    v_stored = torch.from_numpy(v).to(dtype).float().numpy()  # the pass multiplies in dtype
    bias_t = torch.from_numpy(bias)
    if path == "auto":
        res = model_b_pass(
            xi_h, torch.from_numpy(v), beta, bias=bias_t, top_k=k, chunk_bytes=1 << 12
        )
    else:
        res = kernels._chunked_pass(xi_h, torch.from_numpy(v), beta, bias_t, min(k, n), 1 << 12)
    check_pass(res, xi_stored, v_stored, beta, bias, k, rtol=HALF_TOL[dtype])


def test_half_sum_in_float32_is_needed():
    """Sanity of the test above: the same softmax sum accumulated in float16 itself is off
    by far more than the tolerance, so the float32 accumulation is what makes it pass."""
    xi, v, _ = make_case(0, 20_000, 2, 16, 0.0)
    xi_h = torch.from_numpy(xi).to(torch.float16)
    v_h = torch.from_numpy(v).to(torch.float16)
    res = model_b_pass(xi_h, torch.from_numpy(v), 1.0, chunk_bytes=1 << 12)
    _, lse, _ = reference(xi_h.float().numpy(), v_h.float().numpy(), 1.0, None)
    terms = np.exp(v_h.float().numpy() @ xi_h.float().numpy().T).astype(np.float16)
    naive = np.cumsum(terms, axis=1, dtype=np.float16)[:, -1]  # sequential float16 sum
    naive_err = np.abs(np.log(naive.astype(np.float64)) - lse).max()
    assert np.abs(res.lse.numpy() - lse).max() < HALF_TOL[torch.float16] < naive_err


def test_candidate_pass_matches_reference():
    rng = np.random.default_rng(1)
    xi_c = rng.standard_normal((3, 7, 5)).astype(np.float32)
    v = rng.standard_normal((3, 5)).astype(np.float32)
    valid = rng.random((3, 7)) < 0.7
    valid[:, 0] = True
    out, lse, h = candidate_pass(
        torch.from_numpy(xi_c), torch.from_numpy(v), 2.0, torch.from_numpy(valid)
    )
    for i in range(3):
        o_ref, l_ref, h_ref = reference(xi_c[i][valid[i]], v[i : i + 1], 2.0, None)
        np.testing.assert_allclose(out[i].numpy(), o_ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lse[i].item(), l_ref[0], rtol=1e-6)
        np.testing.assert_allclose(h[i].numpy()[valid[i]], h_ref[0], rtol=1e-5, atol=1e-6)
        assert torch.all(torch.isneginf(h[i][torch.from_numpy(~valid[i])]))


@pytest.mark.parametrize("batch", [1, 32, 256, 5000])
def test_chunk_rows_bound_the_temporaries(batch):
    for chunk_bytes in (1 << 16, 1 << 22, 64 << 20):
        rows = chunk_rows_for(batch, 10**7, chunk_bytes, 64 * 4)
        assert 256 <= rows <= 10**7
        assert rows == 256 or batch * rows * 16 <= chunk_bytes
    assert chunk_rows_for(4, 100) >= 100  # one chunk covers a small bank


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_of_a_million_row_bank_is_bounded():
    """10⁶ × 64 float32 memories (256 MB), 32 queries: extra peak RSS < 512 MiB per pass."""
    gen = torch.Generator().manual_seed(0)
    xi = torch.randn(1_000_000, 64, generator=gen)
    v = torch.randn(32, 64, generator=gen)
    bias = torch.zeros(1_000_000)
    bias[::7] = -math.inf
    model_b_pass(xi[:5000], v, 1.0, top_k=5)  # warm up allocator and kernels
    peaks = {}
    for name, kw in {
        "fused": {},
        "top-k": {"top_k": 5},
        "top-k+bias": {"top_k": 5, "bias": bias},
    }.items():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base = _vm_hwm_kib()
        res = model_b_pass(xi, v, 1.0, **kw)
        peaks[name] = (_vm_hwm_kib() - base) / 1024
        assert torch.isfinite(res.lse).all()
    print(f"extra peak RSS (MiB) per model_b_pass, 10^6 x 64 float32, B=32: {peaks}")
    assert max(peaks.values()) < 512


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_pass_matches_reference(dtype):
    xi, v, bias = make_case(5, 5000, 8, 32, 0.2)
    xi_g = torch.from_numpy(xi).to("cuda", dtype)
    res = model_b_pass(
        xi_g, torch.from_numpy(v).cuda(), 3.0, bias=torch.from_numpy(bias).cuda(), top_k=5
    )
    res_cpu = type(res)(*(t.cpu() for t in (res.out, res.lse, res.top_scores, res.top_rows)))
    xi_stored = xi_g.float().cpu().numpy()
    v_stored = torch.from_numpy(v).to(dtype).float().numpy()
    tol = 2e-5 if dtype == torch.float32 else HALF_TOL[dtype]
    check_pass(res_cpu, xi_stored, v_stored, 3.0, bias, 5, rtol=tol)
