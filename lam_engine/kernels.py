"""Chunked Model B pass: Ξᵀ softmax(β Ξ v), log Σ exp(β Ξ v) and top-k in bounded memory.

One pass over the memories computes everything a retrieval step needs. The softmax over N
memories is evaluated chunk by chunk with a running maximum and sum (the online
log-sum-exp of flash-decoding), so no (B, N) matrix larger than `chunk_bytes` exists at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_BYTES = 64 << 20
# Per (query, memory) pair the pass holds a few float32 temporaries (scores, exp, bias):
_BYTES_PER_PAIR = 16


@dataclass
class PassResult:
    """What one pass over the memories yields for a batch of states v."""

    out: torch.Tensor  # (B, d) float32: Ξᵀ softmax(β Ξ v)
    lse: torch.Tensor  # (B,) float32: log Σ_μ exp(β ξ_μ·v)  (= -inf for an empty support)
    top_scores: torch.Tensor  # (B, k) float32: the k largest h_μ = ξ_μ·v
    top_rows: torch.Tensor  # (B, k) int64: their rows (-1 when fewer than k rows exist)


def chunk_rows_for(batch: int, n: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows of Ξ per chunk so that the (B, rows) temporaries fit in `chunk_bytes`."""
    rows = chunk_bytes // max(1, batch * _BYTES_PER_PAIR)
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
    """One chunked pass of Model B over memories `xi` (N, d) for states `v` (B, d).

    `bias` (N,) is added to β·h before the softmax; the bank uses -inf there to hide
    deleted rows (tombstones). Scores are computed in the memories' dtype and the softmax
    is accumulated in float32, as API.md requires for float16/bfloat16 banks.
    """
    n, d = xi.shape
    b = v.shape[0]
    device = xi.device
    v_c = v.to(xi.dtype)
    m = torch.full((b,), -math.inf, dtype=torch.float32, device=device)  # running max
    s_sum = torch.zeros(b, dtype=torch.float32, device=device)  # running Σ exp(·-m)
    acc = torch.zeros(b, d, dtype=torch.float32, device=device)  # running Σ exp(·-m) ξ
    k = min(top_k, n)
    top_s = torch.empty(b, 0, dtype=torch.float32, device=device)
    top_r = torch.empty(b, 0, dtype=torch.int64, device=device)
    rows = chunk_rows_for(b, n, chunk_bytes)
    for start in range(0, n, rows):
        xc = xi[start : start + rows]  # (c, d)
        h = (v_c @ xc.T).float()  # (B, c)
        logits = h * beta
        if bias is not None:
            bc = bias[start : start + rows]
            logits = logits + bc
            h = h + bc  # hidden rows never enter the top-k
        m_new = torch.maximum(m, logits.max(dim=1).values)  # (B,)
        # Rows whose support is still empty keep a finite reference so exp() never sees nan.
        m_ref = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        scale = torch.exp(m - m_ref)  # (B,)
        e = torch.exp(logits - m_ref[:, None])  # (B, c)
        s_sum = s_sum * scale + e.sum(dim=1)
        acc = acc * scale[:, None] + (e.to(xc.dtype) @ xc).float()
        m = m_new
        if k > 0:
            kc = min(k, h.shape[1])
            cs, cr = torch.topk(h, kc, dim=1)
            top_s, idx = torch.topk(torch.cat([top_s, cs], dim=1), min(k, top_s.shape[1] + kc), dim=1)
            top_r = torch.gather(torch.cat([top_r, cr + start], dim=1), 1, idx)
    with torch.no_grad():
        safe = s_sum > 0
        out = torch.where(safe[:, None], acc / s_sum.clamp_min(1e-38)[:, None], torch.zeros_like(acc))
        lse = torch.where(safe, m + torch.log(s_sum.clamp_min(1e-38)), torch.full_like(m, -math.inf))
    if k > 0:
        top_r = torch.where(torch.isfinite(top_s), top_r, torch.full_like(top_r, -1))
    return PassResult(out=out, lse=lse, top_scores=top_s, top_rows=top_r)


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
