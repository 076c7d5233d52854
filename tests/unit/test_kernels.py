"""Model B's torch passes (lam_engine.kernels) against an independent float64 numpy reference.

The native C pass is switched off here, so these pin the torch passes (the fallback, and
the GPU's); tests/unit/test_native_pass.py checks the native one against the same oracle.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine import kernels
from lam_engine.kernels import (
    candidate_pass,
    chunk_rows_for,
    chunked,
    cpu,
    fused,
    model_b_pass,
    native,
)
from tests import reference as ref

HALF_TOL = {torch.float16: 4e-3, torch.bfloat16: 2e-2}  # relative, ~4 ulp of the dtype
# CPU flags under which model_b_pass multiplies bfloat16/float16 natively (forced in tests).
NATIVE_HALF = frozenset({"avx512_bf16", "avx512_fp16"})


@pytest.fixture(autouse=True)
def torch_passes(monkeypatch):
    monkeypatch.setattr(native, "_enabled", False)


def reference(
    xi: np.ndarray, v: np.ndarray, beta: float, bias: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The oracle's (out (B, d), lse (B,), h (B, N) with hidden rows at -inf)."""
    out = ref.step(xi, v, beta, bias)
    lse = ref.logsumexp(ref.logits(xi, v, beta, bias))
    return out, lse, ref.logits(xi, v, 1.0, bias)


def make_case(seed: int, n: int, b: int, d: int, dead_frac: float):
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n, d)).astype(np.float32) / math.sqrt(d)
    v = rng.standard_normal((b, d)).astype(np.float32)
    bias = np.where(rng.random(n) < dead_frac, -np.inf, 0.0).astype(np.float32)
    xi[np.isinf(bias)] = 0.0  # as the bank stores tombstones
    return xi, v, bias


def check_pass(res, xi64, v64, beta, bias, k, rtol):
    out, lse, h = reference(xi64, v64, beta, bias)
    if res.out.shape[1] == 0:  # need_out=False
        assert res.out.shape == (v64.shape[0], 0)
    else:
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
    need_out=st.booleans(),
)
def test_float32_matches_float64_reference(seed, n, b, d, beta, dead, k, chunk_bytes, need_out):
    xi, v, bias = make_case(seed, n, b, d, dead)
    bias_t = torch.from_numpy(bias) if dead > 0 else None
    res = model_b_pass(
        torch.from_numpy(xi),
        torch.from_numpy(v),
        beta,
        bias=bias_t,
        top_k=k,
        chunk_bytes=chunk_bytes,
        need_out=need_out,
    )
    check_pass(res, xi, v, beta, bias if dead > 0 else None, k, rtol=2e-5)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 3000),
    b=st.integers(1, 9),
    d=st.integers(1, 40),
    beta=st.floats(0.05, 60.0),
    dead=st.sampled_from([0.0, 0.3, 1.0]),
    k=st.sampled_from([0, 1, 5]),
    chunk_bytes=st.sampled_from([1, 1 << 14, 64 << 20]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
)
def test_need_out_false_gives_the_same_lse_and_top_k(
    seed, n, b, d, beta, dead, k, chunk_bytes, dtype
):
    """Skipping Ξᵀ p (the last pass of a query, /energy without gradient) changes nothing else."""
    xi, v, bias = make_case(seed, n, b, d, dead)
    xi_t = torch.from_numpy(xi).to(dtype)
    kw = {"bias": torch.from_numpy(bias), "top_k": k, "chunk_bytes": chunk_bytes}
    full = model_b_pass(xi_t, torch.from_numpy(v), beta, **kw)
    part = model_b_pass(xi_t, torch.from_numpy(v), beta, need_out=False, **kw)
    assert full.out.shape == (b, d) and part.out.shape == (b, 0)
    assert part.out.dtype == torch.float32 and part.lse.dtype == torch.float32
    assert torch.equal(torch.isfinite(full.lse), torch.isfinite(part.lse))
    v_stored = torch.from_numpy(v).to(dtype).float().numpy()
    h_max = float(np.abs(xi_t.float().numpy() @ v_stored.T).max())
    tol = 2e-5 * (1 + beta * h_max)  # bf16: the pass without Ξᵀ p refines its sum exactly
    ok = torch.isfinite(full.lse)
    torch.testing.assert_close(part.lse[ok], full.lse[ok], rtol=0, atol=tol)
    assert torch.equal(part.top_rows, full.top_rows)
    torch.testing.assert_close(part.top_scores, full.top_scores, rtol=0, atol=0)


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
    res = chunked.chunked_pass(
        torch.from_numpy(xi), torch.from_numpy(v), beta, bias_t, min(k, n), 1 << 12
    )
    check_pass(res, xi, v, beta, bias if dead > 0 else None, k, rtol=2e-5)


def test_sharded_fused_path_with_remainder_and_dead_shard(monkeypatch):
    """Ξ split into shards (+ n mod S leftover rows), one shard wholly tombstoned.

    The fused kernel is the float32 path when oneDNN's GEMM is not available: forced here.
    """
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(cpu, "linear_op", lambda: None)
    n = 4 * 1024 * 4 + 5
    xi, v, bias = make_case(3, n, 3, 8, 0.2)
    assert fused.shards_for(3, n) == 16
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
@pytest.mark.parametrize("path", ["auto", "chunked", "half-gemm", "widened"])
@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 2000),
    b=st.sampled_from([1, 2, 4]),
    beta=st.floats(0.5, 20.0),
    k=st.sampled_from([0, 4]),
    need_out=st.booleans(),
)
def test_half_memories_accumulate_in_float32(dtype, path, seed, n, b, beta, k, need_out):
    """Half-precision memories: results in float32, within the dtype's rounding of the
    float64 softmax over the *stored* (rounded) values, and far better than a softmax
    accumulated in the half dtype itself. "half-gemm"/"widened": `model_b_pass` as on a CPU
    with/without native GEMMs in the dtype, the half-GEMM path allowed for any B and d."""
    xi, v, bias = make_case(seed, n, b, 16, 0.2)
    xi_h = torch.from_numpy(xi).to(dtype)
    xi_stored = xi_h.float().numpy()
    v_stored = torch.from_numpy(v).to(dtype).float().numpy()  # the pass multiplies in dtype
    bias_t = torch.from_numpy(bias)
    with pytest.MonkeyPatch.context() as mp:
        if path == "half-gemm":
            mp.setattr(cpu, "cpu_flags", lambda: NATIVE_HALF)
            mp.setattr(cpu, "_HALF_MIN_BATCH", 1)
            mp.setattr(cpu, "_HALF_MIN_DIM", 1)
        elif path == "widened":
            mp.setattr(cpu, "cpu_flags", lambda: frozenset())
        if path == "chunked":
            res = chunked.chunked_pass(
                xi_h, torch.from_numpy(v), beta, bias_t, min(k, n), 1 << 12, need_out=need_out
            )
        else:
            res = model_b_pass(
                xi_h,
                torch.from_numpy(v),
                beta,
                bias=bias_t,
                top_k=k,
                chunk_bytes=1 << 12,
                need_out=need_out,
            )
    check_pass(res, xi_stored, v_stored, beta, bias, k, rtol=HALF_TOL[dtype])


# The half-dtype GEMM path (module docstring): logits from two half GEMMs (hi + lo) carry
# ~16 significant bits, Ξᵀ p is within about 2 roundings to the dtype of the exact value.
SPLIT_LSE_TOL = 2e-5  # × (1 + β·max|h|)
SPLIT_OUT_TOL = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}  # × max|out|


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 3000),
    b=st.integers(1, 6),
    d=st.integers(1, 40),
    beta=st.floats(0.5, 60.0),
    dead=st.sampled_from([0.0, 0.3]),
    k=st.sampled_from([0, 1, 5]),
    need_out=st.booleans(),
)
def test_half_gemm_path_is_close_to_float32_exact(dtype, seed, n, b, d, beta, dead, k, need_out):
    xi, v, bias = make_case(seed, n, b, d, dead)
    xi_h = torch.from_numpy(xi).to(dtype)
    xs = xi_h.float().numpy()
    vs = torch.from_numpy(v).to(dtype).float().numpy()
    res = chunked.chunked_pass(
        xi_h,
        torch.from_numpy(v),
        beta,
        torch.from_numpy(bias),
        min(k, n),
        64 << 20,
        need_out=need_out,
        half=True,
    )
    out, lse, h = reference(xs, vs, beta, bias)
    h_max = float(np.abs(np.where(np.isfinite(h), h, 0)).max())
    fin = np.isfinite(lse)
    assert np.array_equal(np.isfinite(res.lse.numpy()), fin)
    lse_err = np.abs(res.lse.numpy()[fin] - lse[fin])
    assert np.all(lse_err <= SPLIT_LSE_TOL * (1 + beta * h_max))
    if need_out:
        scale = max(1e-30, float(np.abs(out).max()))
        assert np.abs(res.out.numpy() - out).max() <= SPLIT_OUT_TOL[dtype] * scale
    if k:
        # Exact top-k: the scores are float32 dot products of the stored values.
        want = np.sort(np.where(np.isfinite(h), h, -np.inf), axis=1)[:, ::-1][:, : min(k, n)]
        got = res.top_scores.numpy()
        assert np.array_equal(np.isfinite(got), np.isfinite(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-6)


def test_half_gemm_policy(monkeypatch):
    """Half-dtype GEMMs only where they pay: native support, Ξᵀ p wanted, B and d large."""
    xi = torch.zeros(10, 384, dtype=torch.bfloat16)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: NATIVE_HALF)
    assert kernels.half_gemm_ok(xi, 32)
    assert not kernels.half_gemm_ok(xi, 32, need_out=False)
    assert not kernels.half_gemm_ok(xi, 8)
    assert not kernels.half_gemm_ok(xi[:, :64], 256)
    assert not kernels.half_gemm_ok(xi.float(), 256)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512_fp16"}))
    assert not kernels.half_gemm_ok(xi, 256)
    assert kernels.half_gemm_ok(xi.half(), 256)


def test_split_logits_are_needed():
    """Sanity of the test above: logits rounded to bfloat16 by a single GEMM are off by
    far more than the split's tolerance at a large β·h (one ulp of 50 is 0.25)."""
    gen = torch.Generator().manual_seed(0)
    xi = torch.nn.functional.normalize(torch.randn(4000, 64, generator=gen), dim=1)
    xi = xi.to(torch.bfloat16)
    v = xi[:3].float() + 0.01 * torch.randn(3, 64, generator=gen)  # near stored memories
    beta = 50.3
    res = chunked.chunked_pass(xi, v, beta, None, 1, 64 << 20, need_out=False, half=True)
    v_b = v.to(torch.bfloat16)
    lse = torch.logsumexp(beta * (v_b.double() @ xi.double().T), dim=1)
    rounded = torch.logsumexp((beta * v_b @ xi.T).double(), dim=1)  # one bf16 GEMM
    assert (rounded - lse).abs().max() > 1e-2
    assert (res.lse.double() - lse).abs().max() < SPLIT_LSE_TOL * (1 + beta)


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


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    b=st.integers(1, 5),
    groups=st.integers(1, 400),
    k=st.integers(1, 13),
    ties=st.booleans(),
    hidden=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_chunk_topk_equals_torch_topk(seed, b, groups, k, ties, hidden):
    gen = torch.Generator().manual_seed(seed)
    c = groups * chunked.TOPK_GROUPS + (seed % 3 == 0)  # not always whole groups
    logits = torch.randn(b, c, generator=gen)
    if ties:
        logits = torch.round(logits * 2) / 2
    logits[torch.rand(b, c, generator=gen) < hidden] = -math.inf
    k = min(k, c)
    want = torch.topk(logits, k, dim=1)
    vals, idx = chunked.chunk_topk(logits, k)
    assert torch.equal(vals, want.values)
    assert torch.equal(torch.gather(logits, 1, idx), vals)
    assert all(len(set(row.tolist())) == k for row in idx)  # k distinct elements


def test_onednn_gemm_is_float32_exact():
    """The float32 GEMMs of the chunked pass (oneDNN when present) are IEEE float32: no
    bfloat16/TF32 shortcut (API.md)."""
    gen = torch.Generator().manual_seed(0)
    for b, c, d in [(1, 5000, 384), (32, 3000, 64), (7, 513, 33)]:
        a = torch.randn(b, d, generator=gen)
        w = torch.randn(c, d, generator=gen)
        e = torch.rand(b, c, generator=gen)
        nt = a.double() @ w.double().T
        nn = e.double() @ w.double()
        # float32 accumulation over d (or c) terms: a few ulps of the sum of |terms|
        tol_nt = 1e-6 * d * (a.abs().double() @ w.abs().double().T)
        tol_nn = 1e-6 * c**0.5 * (e.double() @ w.abs().double())
        assert torch.all((cpu.mm_nt(a, w).double() - nt).abs() <= tol_nt + 1e-30)
        assert torch.all((cpu.mm_nn(e, w).double() - nn).abs() <= tol_nn + 1e-30)


@pytest.mark.parametrize("b", [5, fused.FUSED_MAX_BATCH + 1])
def test_float32_without_onednn_uses_the_fused_kernel(monkeypatch, b):
    """Without oneDNN's GEMM, passes that want Ξᵀ p and no top-k take the fused kernel;
    with it, only up to _FUSED_MAX_BATCH queries do. The results match the reference."""
    xi, v, bias = make_case(4, 5000, b, 24, 0.3)
    calls = []
    real = fused.sdpa_pass
    monkeypatch.setattr(fused, "sdpa_pass", lambda *a: calls.append(1) or real(*a))
    for linear in (cpu.linear_op(), None):
        monkeypatch.setattr(cpu, "linear_op", lambda linear=linear: linear)
        calls.clear()
        for k, need_out in [(0, True), (0, False), (3, True), (3, False)]:
            res = model_b_pass(
                torch.from_numpy(xi),
                torch.from_numpy(v),
                4.0,
                bias=torch.from_numpy(bias),
                top_k=k,
                need_out=need_out,
            )
            check_pass(res, xi, v, 4.0, bias, k, rtol=2e-5)
        to_fused = linear is None or b <= fused.FUSED_MAX_BATCH
        assert len(calls) == (1 if to_fused else 0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_retrieval_skips_the_second_gemm_only_in_the_last_pass(monkeypatch, dtype):
    """Engine.query(steps=s): s passes with Ξᵀ p, then one without (top-k and energy);
    the energy equals /energy of the returned state, with top_k=0 too."""
    from lam_engine import BankConfig, Engine, retrieval

    engine = Engine.open(None)
    engine.create_bank("b", BankConfig(dim=16, beta=6.0, dtype=dtype))
    gen = np.random.default_rng(0)
    engine.upsert("b", gen.standard_normal((500, 16)).astype(np.float32))
    calls = []
    real = retrieval.model_b_pass

    def spy(*args, **kw):
        calls.append((kw.get("top_k", 0), kw.get("need_out", True)))
        return real(*args, **kw)

    monkeypatch.setattr(retrieval, "model_b_pass", spy)
    q = gen.standard_normal((3, 16)).astype(np.float32)
    for steps, top_k in [(1, 5), (3, 0)]:
        calls.clear()
        res = engine.query("b", q, steps=steps, top_k=top_k, tol=0.0)
        assert calls == [(0, True)] * steps + [(top_k, False)]
        states = np.stack([r.state for r in res.results])
        energy = engine.energy("b", states)
        np.testing.assert_allclose([r.energy for r in res.results], energy.energies, atol=1e-5)
        assert all(len(r.matches) == top_k for r in res.results)
    engine.close()


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_of_a_million_row_bank_is_bounded():
    """10⁶ × 64 memories (256 MB float32, 128 MB bfloat16), 32 queries: extra peak RSS
    < 512 MiB per pass (the chunk budget is 64 MiB)."""
    gen = torch.Generator().manual_seed(0)
    xi = torch.randn(1_000_000, 64, generator=gen)
    v = torch.randn(32, 64, generator=gen)
    bias = torch.zeros(1_000_000)
    bias[::7] = -math.inf
    model_b_pass(xi[:5000], v, 1.0, top_k=5)  # warm up allocator and kernels
    peaks = {}
    xi_bf16 = xi.to(torch.bfloat16)
    model_b_pass(xi_bf16[:5000], v, 1.0, top_k=5)
    for name, kw in {
        "full": {},
        "top-k": {"top_k": 5},
        "top-k+bias": {"top_k": 5, "bias": bias},
        "no out": {"top_k": 5, "need_out": False},
        "bf16": {"bf16": True},
        "bf16 top-k+bias": {"bf16": True, "top_k": 5, "bias": bias},
        "bf16 no out": {"bf16": True, "top_k": 5, "need_out": False},
        "bf16 half-GEMM": {"bf16": True, "half": True, "top_k": 5, "bias": bias},
    }.items():
        memories = xi_bf16 if kw.pop("bf16", False) else xi
        with pytest.MonkeyPatch.context() as mp:
            if kw.pop("half", False):
                mp.setattr(cpu, "cpu_flags", lambda: NATIVE_HALF)
                mp.setattr(cpu, "_HALF_MIN_DIM", 1)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            base = _vm_hwm_kib()
            res = model_b_pass(memories, v, 1.0, **kw)
        peaks[name] = (_vm_hwm_kib() - base) / 1024
        assert torch.isfinite(res.lse).all()
    print(f"extra peak RSS (MiB) per model_b_pass, 10^6 x 64, B=32: {peaks}")
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


_SHAPE_CHURN_CHILD = """
import torch
import lam_engine
from lam_engine.kernels import model_b_pass

lam_engine.setup()  # bounds the caches; importing alone changes nothing

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))

gen = torch.Generator().manual_seed(0)
xi = torch.randn(8000, 64, generator=gen)
v = torch.randn(8, 64, generator=gen)
for n in range(2000, 2020):  # warm-up: allocator, thread pool, first kernels
    model_b_pass(xi[:n], v[: 2 + n % 7], 4.0, top_k=5)
base = rss_kib()
for n in range(3000, 3600):  # a bank that grows between micro-batches of varying size
    model_b_pass(xi[:n], v[: 2 + n % 7], 4.0, top_k=5)
print((rss_kib() - base) // 1024)
"""


def _shape_churn_growth_mib(env: dict[str, str]) -> int:
    import subprocess
    import sys

    child_env = {k: v for k, v in os.environ.items() if "CACHE_CAPACITY" not in k} | env
    child_env["LAM_NATIVE_KERNELS"] = "0"  # the oneDNN GEMMs are what this measures
    out = subprocess.run(
        [sys.executable, "-c", _SHAPE_CHURN_CHILD],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(cpu.linear_op() is None, reason="oneDNN GEMM not in this torch build")
def test_onednn_shape_caches_are_bounded():
    """Every bank size × batch size is a new oneDNN primitive; kernels bounds oneDNN's and
    ideep's caches so a growing bank under queries does not grow RSS without end (CI saw
    +660 MB in 12 s of mixed load). The control run, with the library defaults, shows the
    measurement detects the growth."""
    bounded = _shape_churn_growth_mib({})
    unbounded = _shape_churn_growth_mib(
        {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"}
    )
    print(f"RSS growth over 600 shapes: bounded {bounded} MiB, library default {unbounded} MiB")
    assert bounded < 96, bounded
    assert unbounded > 2 * bounded + 64, (bounded, unbounded)


@pytest.mark.skipif(fused._SDPA_CPU is None, reason="no CPU flash-attention kernel in this torch")
def test_chunks_and_shards_merge_through_math_merge(monkeypatch):
    """One merge in the code base: the chunked pass and the fused pass's shards both go
    through lam_engine.math.merge (its property test covers every split)."""
    seen = []
    real_merge, real_stacked = chunked.merge, fused.merge_stacked
    monkeypatch.setattr(
        chunked, "merge", lambda *a, **k: seen.append("chunk") or real_merge(*a, **k)
    )
    monkeypatch.setattr(
        fused, "merge_stacked", lambda *a, **k: seen.append("shard") or real_stacked(*a, **k)
    )
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    xi, v, bias = make_case(5, 3 * 1024 + 7, 2, 8, 0.1)
    args = (torch.from_numpy(xi), torch.from_numpy(v), 3.0)
    res = chunked.chunked_pass(*args, torch.from_numpy(bias), 3, 1 << 12)
    check_pass(res, xi, v, 3.0, bias, 3, rtol=2e-5)
    res = fused.sdpa_pass(*args, torch.from_numpy(bias))
    check_pass(res, xi, v, 3.0, bias, 0, rtol=2e-5)
    assert "chunk" in seen and "shard" in seen
