"""Model B pass: Ξᵀ softmax(β Ξ v), log Σ exp(β Ξ v) and top-k in bounded memory.

One pass over the memories computes what a retrieval step needs; `need_out=False` skips
Ξᵀ p (the last pass of a query and /energy without gradient need only the log-sum-exp and
the top-k), which halves the work.

The chunked pass (`_chunked_pass`) evaluates the softmax over N memories chunk by chunk
with a running maximum and sum (the online log-sum-exp of flash-decoding). β·log₂e is
folded into the score GEMM so it emits base-2 logits directly (exp2 is ~3× faster than exp
on CPU), the chunk's top-k doubles as its maximum (found through strided group maxima,
`_chunk_topk`), and the exp is done in place on a buffer small enough to stay in cache. The
top-k scores are recomputed exactly in float32 at the end from the selected rows.

* float32: the chunked pass. On CPU its GEMMs go to oneDNN (`torch.ops.mkldnn.
  _linear_pointwise`, IEEE float32), ~2× torch's `mm` (MKL) on AMD CPUs, and faster than
  the fused flash-attention kernel for B > 1 even though that one reads Ξ only once. For a
  few queries (B ≤ 16), or without oneDNN, a pass that wants Ξᵀ p and no top-k uses PyTorch's
  fused kernel for CPU (`_scaled_dot_product_flash_attention_for_cpu`), which returns the
  log-sum-exp too; it parallelizes over (batch, heads, query blocks) only, so Ξ is viewed as
  S contiguous shards (the "heads", no copy) whose partial results are merged by
  log-sum-exp.
* bfloat16/float16 memories, by default: the chunked pass on chunks widened to float32
  (exact on the stored values; reading half the bytes, then float32 GEMMs from cache).
* bfloat16/float16 memories, passes with Ξᵀ p, B ≥ 32, d ≥ 256, on a CPU that multiplies
  the dtype natively (bfloat16: AVX512-BF16 or AMX; float16: AVX512-FP16 or AMX-FP16): the
  chunked pass with its GEMMs in the half dtype (oneDNN, ~2× its float32 rate), 5-35 %
  faster than widening there (measured on Zen 5); elsewhere it is not faster. A half-dtype
  GEMM accumulates in float32 but rounds its output (torch has no float32-output half GEMM
  on CPU), so the logits are the sum of two half-dtype GEMMs, hi = round(β₂ Ξ v) and
  lo = round(β₂ Ξ v − hi) (the second subtracts hi inside the GEMM's float32 accumulator):
  about 16 significant bits, |error| ≲ 2⁻¹⁶·|β h| plus the float32 accumulation error,
  where rounded logits alone would be off by up to 2⁻⁸·|β h| (0.03 for β = 8, h = 1; 0.2 at
  β = 50: weights off by 20 %). When the log-sum-exp is the point (top-k asked for, or no
  Ξᵀ p), the terms of the top candidates (k + a margin, re-ranked exactly) are replaced by
  exact float32 ones, so the energy and the weights of the matches are float32-exact where
  they matter. The softmax terms e and their sums are float32; Ξᵀ e is one half-dtype GEMM
  per chunk (e rounded to the dtype, float32 accumulation, the chunk's (B, d) result rounded
  to the dtype) accumulated across chunks in float32 and normalized by the sum of the
  rounded e: a convex combination of the memories within about two roundings to the dtype
  (≤ 2⁻⁷·max|out|, tested), like the fused kernel's half-dtype output (it rounds p to the
  dtype too).
* Without oneDNN (other builds), half dtypes on CPU: the fused kernel in the dtype for
  passes with Ξᵀ p and no top-k (the top-k, if any, from a separate scan), else widened
  chunks; on a GPU, widened chunks.

Precision (API.md): a float32 bank computes in float32 throughout. float16/bfloat16 banks
multiply in float32 on the stored values, or in their dtype with float32 accumulation (see
above), and accumulate the softmax in float32.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import torch

# oneDNN (and ideep above it) cache one compiled GEMM per distinct shape, 1024 of each by
# default. A bank's row count changes with every write and the micro-batch size with every
# call, so under mixed store/query load the caches fill with ~0.5 MB entries (measured:
# +500 MB of RSS over 1000 shapes). 64 entries bound that to a few tens of MB and still
# hold every shape of a steady query load. Read at the first oneDNN call, so setting them
# here works even if torch was imported first; an operator's own values win.
ONEDNN_CACHE_CAPACITY = "64"
for _var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
    os.environ.setdefault(_var, ONEDNN_CACHE_CAPACITY)

DEFAULT_CHUNK_BYTES = 64 << 20
# Per (query, memory) pair the chunked pass holds a few temporaries (float32 logits and
# exp; half-dtype hi, lo and rounded exp; top-k scratch): at most this many bytes.
_BYTES_PER_PAIR = 16
# Elements of the (B, rows) logits per chunk: a few MiB, so the in-place softmax passes run
# from cache, yet large enough that a GEMM chunk amortizes the per-chunk Python overhead.
_CHUNK_PAIRS = 1 << 19
# Rows of Ξ per chunk for small (memory-bound) batches: the chunk is read twice (scores,
# then Ξᵀ p); the second read should hit the last-level cache.
_CHUNK_XI_BYTES = 8 << 20
_SMALL_BATCH = 16
# Half-dtype chunks widened to float32 (no native half GEMM): bound the widened copy.
_WIDEN_BYTES = 16 << 20
# The half-dtype GEMM path pays (measured on Zen 5, oneDNN) only for passes with Ξᵀ p, at
# least this many queries and this dimension; elsewhere widening chunks to float32 is as
# fast or faster (and exact).
_HALF_MIN_BATCH = 32
_HALF_MIN_DIM = 256
# Extra top-k candidates kept by the half-dtype path, re-ranked exactly in float32.
_TOP_MARGIN = 3
# Multiply-adds below which a float32 GEMM stays with torch.mm rather than oneDNN.
_ONEDNN_MIN_MACS = 1 << 20
# Chunk top-k by strided group maxima (see _chunk_topk): groups per row, and the fewest
# groups per wanted element for it to pay (torch.topk is fast on rows ≥ 64·k long).
_TOPK_GROUPS = 16
_TOPK_MIN_GROUPS_PER_K = 64
# flash attention on CPU: kv blocks of 512 rows; fewer rows per shard would waste blocks.
_MIN_SHARD_ROWS = 1024
_MAX_SHARDS = 16
_LN2 = math.log(2.0)
_SDPA_CPU: Any = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_NATIVE_FLAGS = {
    torch.bfloat16: ("avx512_bf16", "amx_bf16"),
    torch.float16: ("avx512_fp16", "amx_fp16"),
}


@dataclass
class PassResult:
    """What one pass over the memories yields for a batch of states v."""

    out: torch.Tensor  # (B, d) float32: Ξᵀ softmax(β Ξ v); (B, 0) when not asked for
    lse: torch.Tensor  # (B,) float32: log Σ_μ exp(β ξ_μ·v)  (= -inf for an empty support)
    top_scores: torch.Tensor  # (B, k) float32: the k largest h_μ = ξ_μ·v
    top_rows: torch.Tensor  # (B, k) int64: their rows (-1 when fewer than k rows exist)


def chunk_rows_for(
    batch: int,
    n: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    row_bytes: int = 0,
    xi_bytes: int | None = None,
) -> int:
    """Rows of Ξ per chunk of the chunked pass.

    Bounded by `chunk_bytes` for the (B, rows) temporaries (the memory guarantee), by a
    cache-sized number of (query, memory) pairs, and, when `row_bytes` (bytes of one
    memory) is given, by `xi_bytes` of Ξ per chunk (default: a cache-sized slice for small
    batches, no bound for larger ones).
    """
    rows = min(chunk_bytes // max(1, batch * _BYTES_PER_PAIR), _CHUNK_PAIRS // max(1, batch))
    if xi_bytes is None:
        xi_bytes = _CHUNK_XI_BYTES if batch < _SMALL_BATCH else 0
    if row_bytes > 0 and xi_bytes > 0:
        rows = min(rows, max(xi_bytes // row_bytes, 4096))
    rows = rows // 256 * 256  # whole groups for _chunk_topk
    return int(max(256, min(n, rows)))


def model_b_pass(
    xi: torch.Tensor,
    v: torch.Tensor,
    beta: float,
    *,
    bias: torch.Tensor | None = None,
    top_k: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    need_out: bool = True,
) -> PassResult:
    """One pass of Model B over memories `xi` (N, d) for states `v` (B, d).

    `bias` (N,) is 0 or -inf: -inf hides a row (a tombstone) from the softmax and the top-k.
    With `need_out=False` the result's `out` is an empty (B, 0) tensor and the second GEMM
    (Ξᵀ p) is skipped; lse and the top-k are those of `need_out=True` (up to rounding).
    """
    n = xi.shape[0]
    k = min(top_k, n)
    with torch.no_grad():
        if half_gemm_ok(xi, v.shape[0], need_out=need_out):
            return _chunked_pass(xi, v, beta, bias, k, chunk_bytes, need_out=need_out, half=True)
        if need_out and _use_sdpa(xi, v) and _fused_wins(xi, v.shape[0]):
            if k == 0:
                return _sdpa_pass(xi, v, beta, bias)
            if xi.dtype != torch.float32:
                # A half-precision GEMM rounds its output: the fused kernel keeps the scores
                # in float32, the top-k comes from a separate scan refined in float32.
                res = _sdpa_pass(xi, v, beta, bias)
                res.top_scores, res.top_rows = _topk_scan(xi, v, bias, k, chunk_bytes)
                return res
        return _chunked_pass(xi, v, beta, bias, k, chunk_bytes, need_out=need_out)


# Up to this many float32 queries, a pass that wants Ξᵀ p goes to the fused kernel even
# with oneDNN there: reading Ξ once beats two GEMMs while they are memory-bound. Measured on
# the 2-core Zen 4 (N = 10⁵, ms per pass, chunked → fused): d = 384, B = 8: 28 → 20,
# B = 16: 29 → 25, B = 32: tie, B = 64: 71 → 87; d = 64, B = 16: 9.7 → 6.8; d = 768,
# B = 16: 51 → 45. Micro-batches of a few requests land here.
_FUSED_MAX_BATCH = 16


def _fused_wins(xi: torch.Tensor, batch: int) -> bool:
    """Whether a pass that wants Ξᵀ p (and no top-k) goes to the fused kernel: without
    oneDNN's GEMM, or for up to _FUSED_MAX_BATCH float32 queries."""
    return _linear_op() is None or (batch <= _FUSED_MAX_BATCH and xi.dtype == torch.float32)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def half_gemm_ok(xi: torch.Tensor, batch: int, *, need_out: bool = True) -> bool:
    """Whether the pass multiplies in the memories' half dtype (else it widens to float32)."""
    if xi.device.type != "cpu" or xi.dtype not in _NATIVE_FLAGS:
        return False
    if not need_out or batch < _HALF_MIN_BATCH or xi.shape[1] < _HALF_MIN_DIM:
        return False
    return any(flag in _cpu_flags() for flag in _NATIVE_FLAGS[xi.dtype])


@functools.lru_cache(maxsize=1)
def _linear_op() -> Any:
    """oneDNN's GEMM, `torch.ops.mkldnn._linear_pointwise` (a @ wᵀ), if it is there and exact.

    On CPU, torch's float32 `mm` goes to MKL, which on AMD processors runs well below the
    machine's float32 rate; oneDNN reaches it (~2× on Zen). It is a private op: used only
    if it exists and reproduces a float64 product to float32 accuracy (no bf16/TF32 mode).
    """
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(3, 67, generator=gen)
        w = torch.randn(45, 67, generator=gen)
        e = torch.randn(3, 45, generator=gen)
        want_nt = a.double() @ w.double().T
        want_nn = e.double() @ w.double()
        got_nt = op(a, w, None, "none", [None], "").double()
        got_nn = op(e, w.T, None, "none", [None], "").double()
    except Exception:  # any failure: fall back to torch.mm
        return None
    ok = torch.allclose(got_nt, want_nt, rtol=1e-5, atol=1e-5) and torch.allclose(
        got_nn, want_nn, rtol=1e-5, atol=1e-5
    )
    return op if ok else None


def _onednn_for(a: torch.Tensor, w: torch.Tensor) -> Any:
    """oneDNN's GEMM for a CPU product of a (B, ·) and w (c, d), unless it is too small to
    pay for oneDNN's fixed cost per call (~10 µs)."""
    if a.device.type != "cpu" or a.shape[0] * w.shape[0] * w.shape[1] < _ONEDNN_MIN_MACS:
        return None
    if not (a.is_contiguous() and w.is_contiguous()):
        return None
    return _linear_op()


def _mm_nt(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """a @ wᵀ in float32: a (B, d), w (c, d) -> (B, c)."""
    op = _onednn_for(a, w)
    return op(a, w, None, "none", [None], "") if op is not None else a @ w.T


def _mm_nn(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """e @ w in float32: e (B, c), w (c, d) -> (B, d)."""
    op = _onednn_for(e, w)
    return op(e, w.T, None, "none", [None], "") if op is not None else e @ w


# ---- fused attention path (CPU, no top-k) ---------------------------------------------------


def _use_sdpa(xi: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        _SDPA_CPU is not None
        and xi.device.type == "cpu"
        and xi.shape[0] > 0
        and v.shape[0] > 0
        and xi.is_contiguous()
        and xi.dtype in (torch.float32, torch.bfloat16, torch.float16)
    )


def _shards_for(batch: int, n: int) -> int:
    """Shards of Ξ so that (query blocks × shards) keeps every thread busy."""
    # The CPU flash kernel's query block: 32 rows below 192 queries, 64 below 768, else 256.
    q_split = 32 if batch < 192 else 64 if batch < 768 else 256
    q_blocks = -(-batch // q_split)
    want = -(-4 * torch.get_num_threads() // q_blocks)
    return int(max(1, min(want, _MAX_SHARDS, n // _MIN_SHARD_ROWS)))


def _sdpa_pass(
    xi: torch.Tensor, v: torch.Tensor, beta: float, bias: torch.Tensor | None
) -> PassResult:
    n, d = xi.shape
    b = v.shape[0]
    s = _shards_for(b, n)
    rows = n // s
    main = rows * s
    q = v.to(xi.dtype).reshape(1, 1, b, d).expand(1, s, b, d)
    kv = xi[:main].view(1, s, rows, d)  # (1, S, rows, d): shards are contiguous row ranges
    mask = None
    dead = None
    if bias is not None:
        bias_s = bias[:main].view(1, s, 1, rows)
        mask = bias_s.to(xi.dtype)
        # The kernel reports lse = 0 (not -inf) for a fully hidden shard.
        dead = torch.isneginf(bias_s).all(dim=3).view(s, 1)  # (S, 1)
    out_s, lse_s = _SDPA_CPU(q, kv, kv, attn_mask=mask, scale=float(beta))
    outs = out_s[0].float()  # (S, B, d)
    lses = lse_s[0].float()  # (S, B)
    if dead is not None:
        lses = lses.masked_fill(dead, -math.inf)
    if main < n:
        # The n mod S rows left over: a tiny dense softmax, merged like one more shard.
        r_out, r_lse = _dense_part(xi[main:], v, beta, None if bias is None else bias[main:])
        outs = torch.cat([outs, r_out[None]])
        lses = torch.cat([lses, r_lse[None]])
    out, lse = _merge(outs, lses)
    empty_f = torch.empty(b, 0, dtype=torch.float32, device=xi.device)
    empty_i = torch.empty(b, 0, dtype=torch.int64, device=xi.device)
    return PassResult(out=out, lse=lse, top_scores=empty_f, top_rows=empty_i)


def _dense_part(
    xi: torch.Tensor, v: torch.Tensor, beta: float, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over a handful of rows: (out (B, d), lse (B,)) in float32."""
    x = xi.float()
    logits = beta * (v.to(xi.dtype).float() @ x.T)  # (B, r)
    if bias is not None:
        logits = logits + bias.float()
    lse = torch.logsumexp(logits, dim=1)
    p = torch.exp(logits - torch.where(torch.isfinite(lse), lse, 0)[:, None])
    return p @ x, lse


def _merge(outs: torch.Tensor, lses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine per-shard softmax results (S, B, d), (S, B) into the global ones."""
    lse = torch.logsumexp(lses, dim=0)  # (B,)
    ref = torch.where(torch.isfinite(lse), lse, 0)
    w = torch.exp(lses - ref)  # (S, B); 0 for empty shards
    # An empty shard's output is 0 (or garbage): its weight is 0, but 0·nan would be nan.
    outs = torch.where((w > 0)[..., None], outs, 0)
    out = (w[..., None] * outs).sum(dim=0)
    return out, lse


# ---- chunked path (top-k, GPU) --------------------------------------------------------------


def _chunked_pass(
    xi: torch.Tensor,
    v: torch.Tensor,
    beta: float,
    bias: torch.Tensor | None,
    k: int,
    chunk_bytes: int,
    *,
    need_out: bool = True,
    half: bool = False,
) -> PassResult:
    """Online-softmax pass, accumulated in float32.

    `half`: the GEMMs run in the memories' half dtype (split logits, see the module
    docstring); otherwise in float32, half-dtype chunks being widened first.
    """
    n, d = xi.shape
    b = v.shape[0]
    device = xi.device
    f32 = torch.float32
    # Logits in base 2 (β₂ = β·log₂e): exp2 is ~3× faster than exp on CPU.
    beta2 = beta / _LN2
    half = half and xi.dtype != f32
    widen = not half and xi.dtype != f32
    v_st = v.to(xi.dtype)  # the state as the memories' dtype holds it
    if half:
        v_gemm = v_st.contiguous()
        # Candidates: a margin for the exact re-ranking, and (when the log-sum-exp is what
        # the caller wants, i.e. top-k asked for or no Ξᵀ p) for refining the sum.
        kk = min(n, k + _TOP_MARGIN) if k > 0 or not need_out else 0
    else:
        # β folded into the queries: the score GEMM emits logits directly.
        v_gemm = v_st.to(f32) * beta2  # (B, d)
        kk = k
    # Ξ per chunk: a widened copy is bounded; a chunk read only once (float32, no Ξᵀ p)
    # needs no cache-sized bound (default: cache-sized for small batches).
    xi_bytes = None
    if widen:
        xi_bytes = _WIDEN_BYTES if b >= _SMALL_BATCH else None
    elif not need_out and not half:
        xi_bytes = 0
    rows = chunk_rows_for(b, n, chunk_bytes, d * (4 if widen else xi.element_size()), xi_bytes)
    m = torch.full((b,), -math.inf, dtype=f32, device=device)  # running max (reference)
    s_sum = torch.zeros(b, dtype=f32, device=device)  # running Σ exp(·-m)
    # Running Σ exp(·-m) ξ, and (half) the sum of the rounded exp(·-m) that weighted it.
    acc = torch.zeros(b, d if need_out else 0, dtype=f32, device=device)
    s_out = torch.zeros(b, dtype=f32, device=device) if half and need_out else s_sum
    # Top-k is tracked on logits (monotone in h since β > 0) and made exact at the end.
    top_l = torch.full((b, kk), -math.inf, dtype=f32, device=device)
    top_r = torch.full((b, kk), -1, dtype=torch.int64, device=device)
    for start in range(0, n, rows):
        xc = xi[start : start + rows]  # (c, d)
        if half:
            xt = xc.T
            hi = torch.addmm(_zero(xi.dtype), v_gemm, xt, beta=0, alpha=beta2)  # round(β₂h)
            lo = torch.addmm(hi, v_gemm, xt, beta=-1, alpha=beta2)  # round(β₂h - hi)
            logits = hi.to(f32).add_(lo)  # (B, c)
            del hi, lo
        else:
            if widen:
                xc = xc.to(f32)
            logits = _mm_nt(v_gemm, xc)  # (B, c)
        if bias is not None:
            logits.add_(bias[start : start + rows])
        if kk > 0:
            cl, cr = _chunk_topk(logits, min(kk, logits.shape[1]))
            c_max = cl[:, 0]  # the chunk's top-1 is its maximum: no extra reduction
            top_l, idx = torch.topk(torch.cat([top_l, cl], dim=1), kk, dim=1)
            top_r = torch.gather(torch.cat([top_r, cr + start], dim=1), 1, idx)
        else:
            c_max = logits.amax(dim=1)
        m_new = torch.maximum(m, c_max)  # (B,)
        # Rows whose support is still empty keep a finite reference so exp() never sees nan.
        m_ref = torch.where(torch.isfinite(m_new), m_new, 0)
        scale = torch.exp2(m - m_ref)  # (B,)
        e = logits.sub_(m_ref[:, None]).exp2_()  # (B, c), in place
        s_sum.mul_(scale).add_(e.sum(dim=1))
        if need_out:
            acc.mul_(scale[:, None])
            if half:
                e_h = e.to(xi.dtype)
                acc.add_(e_h @ xc)
                s_out.mul_(scale).add_(e_h.sum(dim=1, dtype=f32))
            else:
                acc.add_(_mm_nn(e, xc))
        m = m_new
    safe = s_sum > 0
    out = acc  # (B, 0) without need_out
    if need_out:
        out = torch.where(safe[:, None], acc / s_out.clamp_min(1e-38)[:, None], 0)
    if kk == 0:
        top_s, top_r = top_l, top_r
    else:
        h_c = _exact_scores(xi, v, top_l, top_r)  # (B, kk)
        if half:
            # The candidates' terms of the sum, from the split logits, replaced by exact ones.
            ref = torch.where(torch.isfinite(m), m, 0)[:, None]
            found = torch.isfinite(top_l)
            fix = torch.exp2(h_c * beta2 - ref) - torch.exp2(top_l - ref)
            s_sum = s_sum + torch.where(found, fix, 0).sum(dim=1)
        top_s, top_r = _best(h_c, top_r, k)
    lse = torch.where(safe, (m + torch.log2(s_sum.clamp_min(1e-38))) * _LN2, -math.inf)
    return PassResult(out=out, lse=lse, top_scores=top_s, top_rows=top_r)


def _chunk_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(logits, k, dim=1) (values descending, indices), exactly, but faster for
    long rows.

    torch.topk scans every element with scalar code; a vectorized max over G strided groups
    of a row ({j, j + c/G, j + 2c/G, ...}) is ~10× cheaper per element. The k largest
    elements lie in the k groups with the largest maxima (a group holding one of them has
    its maximum ≥ the k-th largest value, and at most k groups can), so topk runs on the
    c/G group maxima and then on the k·G members of the winning groups only.
    """
    b, c = logits.shape
    g = _TOPK_GROUPS
    if c % g or c // g < _TOPK_MIN_GROUPS_PER_K * k:
        return torch.topk(logits, k, dim=1)
    cg = c // g
    group_max = logits.view(b, g, cg).amax(dim=1)  # (B, c/G)
    _, gi = torch.topk(group_max, k, dim=1)  # (B, k) winning groups
    members = (gi[:, :, None] + _group_offsets(g, cg, logits.device)).reshape(b, k * g)
    vals, pos = torch.topk(torch.gather(logits, 1, members), k, dim=1)
    return vals, torch.gather(members, 1, pos)


@functools.lru_cache(maxsize=16)
def _group_offsets(g: int, cg: int, device: torch.device) -> torch.Tensor:
    return torch.arange(g, device=device).mul_(cg).view(1, 1, g)


@functools.lru_cache(maxsize=4)
def _zero(dtype: torch.dtype) -> torch.Tensor:
    """A (1, 1) zero: the ignored addend of addmm(beta=0) (broadcast, never written)."""
    return torch.zeros(1, 1, dtype=dtype)


def _topk_scan(
    xi: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, k: int, chunk_bytes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of h = Ξ v by a GEMM scan in the memories' dtype, made exact in float32.

    The dtype's rounding of h can reorder near-ties, so a margin of extra candidates is
    kept and re-ranked by their exact scores.
    """
    n, d = xi.shape
    b = v.shape[0]
    kk = min(n, 2 * k + 8)
    v_c = v.to(xi.dtype)
    top_h = torch.full((b, kk), -math.inf, dtype=torch.float32, device=xi.device)
    top_r = torch.full((b, kk), -1, dtype=torch.int64, device=xi.device)
    rows = chunk_rows_for(b, n, chunk_bytes, d * xi.element_size())
    for start in range(0, n, rows):
        h = (v_c @ xi[start : start + rows].T).float()  # (B, c)
        if bias is not None:
            h.add_(bias[start : start + rows])
        ch, cr = torch.topk(h, min(kk, h.shape[1]), dim=1)
        top_h, idx = torch.topk(torch.cat([top_h, ch], dim=1), kk, dim=1)
        top_r = torch.gather(torch.cat([top_r, cr + start], dim=1), 1, idx)
    return _exact_top(xi, v, top_h, top_r, k)


def _exact_top(
    xi: torch.Tensor, v: torch.Tensor, top_l: torch.Tensor, top_r: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the candidates by h = ξ·v in float32 (of the stored values), descending.

    Candidates with a -inf key are hidden or padding: they come back as (-inf, -1).
    """
    if top_r.shape[1] == 0:
        return top_l, top_r
    return _best(_exact_scores(xi, v, top_l, top_r), top_r, k)


def _exact_scores(
    xi: torch.Tensor, v: torch.Tensor, cand_l: torch.Tensor, cand_r: torch.Tensor
) -> torch.Tensor:
    """h = ξ·v in float32 (of the stored values) for the candidates; -inf where the key is."""
    b, kk = cand_r.shape
    found = torch.isfinite(cand_l)
    rows = torch.where(found, cand_r, 0)
    xi_sel = xi[rows.reshape(-1)].reshape(b, kk, xi.shape[1]).float()  # (B, kk, d)
    h = torch.einsum("bkd,bd->bk", xi_sel, v.to(xi.dtype).float())
    return torch.where(found, h, -math.inf)


def _best(h: torch.Tensor, cand_r: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest exact scores of the candidates, descending, and their rows (-1: none)."""
    h, order = torch.topk(h, k, dim=1)
    rows = torch.gather(cand_r, 1, order)
    return h, torch.where(torch.isfinite(h), rows, -1)


def candidate_pass(
    xi_c: torch.Tensor, v: torch.Tensor, beta: float, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact Model B softmax restricted to per-query candidates.

    xi_c (B, k, d) are the gathered candidate memories, `valid` (B, k) marks real ones.
    Returns (out (B, d), lse (B,), h (B, k)) with h = -inf at padding.
    """
    h = torch.einsum("bkd,bd->bk", xi_c, v.to(xi_c.dtype)).float()  # (B, k)
    h = torch.where(valid, h, torch.full_like(h, -math.inf))
    logits = h * beta
    lse = torch.logsumexp(logits, dim=1)  # (B,)
    p = torch.exp(logits - lse[:, None])  # (B, k)
    p = torch.where(valid, p, torch.zeros_like(p))
    out = torch.einsum("bk,bkd->bd", p, xi_c.float())
    return out, lse, h
