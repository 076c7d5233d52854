"""Model B pass: Ξᵀ softmax(β Ξ v), log Σ exp(β Ξ v) and top-k in bounded memory.

One pass over the memories computes everything a retrieval step needs. Two code paths:

* No top-k on CPU (every descent step but the last one, and /energy): PyTorch's fused
  flash-attention kernel for CPU (`_scaled_dot_product_flash_attention_for_cpu`), which
  returns the log-sum-exp too. It parallelizes over (batch, heads, query blocks) only, so
  a single query block would run on one core: Ξ is viewed as S contiguous shards (the
  "heads", no copy) and the S partial results are merged by log-sum-exp.
* Top-k (the last pass), or a GPU: the chunked pass below. The softmax over N memories is
  evaluated chunk by chunk with a running maximum and sum (the online log-sum-exp of
  flash-decoding); β is folded into the queries so the score GEMM emits logits directly,
  the chunk's top-k doubles as its maximum, and the exp is done in place on a buffer small
  enough to stay in cache. The top-k scores are recomputed exactly in float32 at the end
  from the k selected rows.

Precision (API.md): a float32 bank computes in float32 throughout. float16/bfloat16 banks
multiply in their dtype with float32 accumulation and accumulate the softmax in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_BYTES = 64 << 20
# Per (query, memory) pair the chunked pass holds a few float32 temporaries (logits, exp):
_BYTES_PER_PAIR = 16
# Elements of the (B, rows) logits per chunk: a few MiB, so the in-place softmax passes run
# from cache, yet large enough that a GEMM chunk amortizes the per-chunk Python overhead.
_CHUNK_PAIRS = 1 << 20
# Rows of Ξ per chunk for small (memory-bound) batches: the chunk is read twice (scores,
# then Ξᵀ p); the second read should hit the last-level cache.
_CHUNK_XI_BYTES = 8 << 20
_SMALL_BATCH = 16
# flash attention on CPU: kv blocks of 512 rows; fewer rows per shard would waste blocks.
_MIN_SHARD_ROWS = 1024
_MAX_SHARDS = 16
_SDPA_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


@dataclass
class PassResult:
    """What one pass over the memories yields for a batch of states v."""

    out: torch.Tensor  # (B, d) float32: Ξᵀ softmax(β Ξ v)
    lse: torch.Tensor  # (B,) float32: log Σ_μ exp(β ξ_μ·v)  (= -inf for an empty support)
    top_scores: torch.Tensor  # (B, k) float32: the k largest h_μ = ξ_μ·v
    top_rows: torch.Tensor  # (B, k) int64: their rows (-1 when fewer than k rows exist)


def chunk_rows_for(
    batch: int, n: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES, row_bytes: int = 0
) -> int:
    """Rows of Ξ per chunk of the chunked pass.

    Bounded by `chunk_bytes` for the (B, rows) temporaries (the memory guarantee), by a
    cache-sized number of (query, memory) pairs, and, when `row_bytes` (bytes of one
    memory) is given, by a cache-sized slice of Ξ for small batches.
    """
    rows = min(chunk_bytes // max(1, batch * _BYTES_PER_PAIR), _CHUNK_PAIRS // max(1, batch))
    if row_bytes > 0 and batch < _SMALL_BATCH:
        rows = min(rows, max(_CHUNK_XI_BYTES // row_bytes, 4096))
    return int(max(256, min(n, rows)))


def model_b_pass(
    xi: torch.Tensor,
    v: torch.Tensor,
    beta: float,
    *,
    bias: torch.Tensor | None = None,
    top_k: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> PassResult:
    """One pass of Model B over memories `xi` (N, d) for states `v` (B, d).

    `bias` (N,) is 0 or -inf: -inf hides a row (a tombstone) from the softmax and the top-k.
    """
    n = xi.shape[0]
    k = min(top_k, n)
    with torch.no_grad():
        if _use_sdpa(xi, v):
            if k == 0:
                return _sdpa_pass(xi, v, beta, bias)
            if xi.dtype != torch.float32:
                # A half-precision GEMM rounds its output: the fused kernel keeps the scores
                # in float32, the top-k comes from a separate scan refined in float32.
                res = _sdpa_pass(xi, v, beta, bias)
                res.top_scores, res.top_rows = _topk_scan(xi, v, bias, k, chunk_bytes)
                return res
        return _chunked_pass(xi, v, beta, bias, k, chunk_bytes)


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
) -> PassResult:
    """Online-softmax pass in float32 (half-precision chunks are widened first)."""
    n, d = xi.shape
    b = v.shape[0]
    device = xi.device
    exact32 = xi.dtype == torch.float32
    # β folded into the queries: the score GEMM emits logits directly.
    v_logit = v.to(xi.dtype).float() * beta  # (B, d)
    m = torch.full((b,), -math.inf, dtype=torch.float32, device=device)  # running max
    s_sum = torch.zeros(b, dtype=torch.float32, device=device)  # running Σ exp(·-m)
    acc = torch.zeros(b, d, dtype=torch.float32, device=device)  # running Σ exp(·-m) ξ
    # Top-k is tracked on logits (monotone in h since β > 0) and made exact at the end.
    top_l = torch.full((b, k), -math.inf, dtype=torch.float32, device=device)
    top_r = torch.full((b, k), -1, dtype=torch.int64, device=device)
    rows = chunk_rows_for(b, n, chunk_bytes, d * 4)
    for start in range(0, n, rows):
        xc = xi[start : start + rows]  # (c, d)
        if not exact32:
            xc = xc.float()
        logits = v_logit @ xc.T  # (B, c)
        if bias is not None:
            logits.add_(bias[start : start + rows])
        if k > 0:
            cl, cr = torch.topk(logits, min(k, logits.shape[1]), dim=1)
            c_max = cl[:, 0]  # the chunk's top-1 is its maximum: no extra reduction
            top_l, idx = torch.topk(torch.cat([top_l, cl], dim=1), k, dim=1)
            top_r = torch.gather(torch.cat([top_r, cr + start], dim=1), 1, idx)
        else:
            c_max = logits.amax(dim=1)
        m_new = torch.maximum(m, c_max)  # (B,)
        # Rows whose support is still empty keep a finite reference so exp() never sees nan.
        m_ref = torch.where(torch.isfinite(m_new), m_new, 0)
        scale = torch.exp(m - m_ref)  # (B,)
        e = logits.sub_(m_ref[:, None]).exp_()  # (B, c), in place
        s_sum.mul_(scale).add_(e.sum(dim=1))
        acc.mul_(scale[:, None]).add_(e @ xc)
        m = m_new
    safe = s_sum > 0
    out = torch.where(safe[:, None], acc / s_sum.clamp_min(1e-38)[:, None], 0)
    lse = torch.where(safe, m + torch.log(s_sum.clamp_min(1e-38)), -math.inf)
    top_s, top_r = _exact_top(xi, v, top_l, top_r, k)
    return PassResult(out=out, lse=lse, top_scores=top_s, top_rows=top_r)


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
    b, kk = top_r.shape
    if kk == 0:
        return top_l, top_r
    found = torch.isfinite(top_l)
    rows = torch.where(found, top_r, 0)
    xi_sel = xi[rows.reshape(-1)].reshape(b, kk, -1).float()  # (B, kk, d)
    h = torch.einsum("bkd,bd->bk", xi_sel, v.to(xi.dtype).float())
    h = torch.where(found, h, -math.inf)
    h, order = torch.topk(h, k, dim=1)
    rows = torch.gather(torch.where(found, top_r, -1), 1, order)
    rows = torch.where(torch.isfinite(h), rows, -1)
    return h, rows


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
