"""The fused pass on CPU: PyTorch's flash-attention kernel over shards of Ξ (no top-k).

`_scaled_dot_product_flash_attention_for_cpu` returns Ξᵀ softmax and the log-sum-exp in
one read of Ξ, but parallelizes over (batch, heads, query blocks) only; so Ξ is viewed as
S contiguous shards (the "heads", no copy) whose results merge by `math.merge`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..math.merge import Partials, dense_partials, finish, merge_stacked
from . import cpu
from .result import PassResult

# flash attention on CPU: kv blocks of 512 rows; fewer rows per shard would waste blocks.
_MIN_SHARD_ROWS = 1024
_MAX_SHARDS = 16
_SDPA_CPU: Any = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
# Up to this many float32 queries, a pass that wants Ξᵀ p goes to the fused kernel even
# with oneDNN there: reading Ξ once beats two GEMMs while they are memory-bound. Measured on
# the 2-core Zen 4 (N = 10⁵, ms per pass, chunked → fused): d = 384, B = 8: 28 → 20,
# B = 16: 29 → 25, B = 32: tie, B = 64: 71 → 87; d = 64, B = 16: 9.7 → 6.8; d = 768,
# B = 16: 51 → 45. Micro-batches of a few requests land here.
FUSED_MAX_BATCH = 16


def fused_wins(xi: torch.Tensor, batch: int) -> bool:
    """Whether a pass that wants Ξᵀ p (and no top-k) goes to the fused kernel: without
    oneDNN's GEMM, or for up to FUSED_MAX_BATCH float32 queries."""
    return cpu.linear_op() is None or (batch <= FUSED_MAX_BATCH and xi.dtype == torch.float32)


def use_sdpa(xi: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        _SDPA_CPU is not None
        and xi.device.type == "cpu"
        and xi.shape[0] > 0
        and v.shape[0] > 0
        and xi.is_contiguous()
        and xi.dtype in (torch.float32, torch.bfloat16, torch.float16)
    )


def shards_for(batch: int, n: int) -> int:
    """Shards of Ξ so that (query blocks × shards) keeps every thread busy."""
    # The CPU flash kernel's query block: 32 rows below 192 queries, 64 below 768, else 256.
    q_split = 32 if batch < 192 else 64 if batch < 768 else 256
    q_blocks = -(-batch // q_split)
    want = -(-4 * torch.get_num_threads() // q_blocks)
    return int(max(1, min(want, _MAX_SHARDS, n // _MIN_SHARD_ROWS)))


def sdpa_pass(
    xi: torch.Tensor, v: torch.Tensor, beta: float, bias: torch.Tensor | None
) -> PassResult:
    n, d = xi.shape
    b = v.shape[0]
    s = shards_for(b, n)
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
    # Each shard is its own softmax: m = lse, S = 1 (0 for an empty shard), V = out.
    sums = torch.isfinite(lses).to(torch.float32)  # (S, B)
    if main < n:
        # The n mod S rows left over: a tiny dense softmax, merged like one more shard.
        rest_bias = None if bias is None else bias[main:]
        rest = dense_partials(xi[main:], v, beta, bias=rest_bias, row0=main)
        lses = torch.cat([lses, rest.m[None]])
        sums = torch.cat([sums, rest.s[None]])
        outs = torch.cat([outs, rest.v[None]])
    m, z, acc, _ = merge_stacked(lses, sums, outs)
    empty_f = torch.empty(b, 0, dtype=torch.float32, device=xi.device)
    empty_i = torch.empty(b, 0, dtype=torch.int64, device=xi.device)
    out, lse = finish(Partials(m=m, s=z, v=acc, top_scores=empty_f, top_rows=empty_i))
    return PassResult(out=out, lse=lse, top_scores=empty_f, top_rows=empty_i)
