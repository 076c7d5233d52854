"""The exact Model B softmax over per-query candidates (the prefiltered pass)."""

from __future__ import annotations

import math

import torch


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
