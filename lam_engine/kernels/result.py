"""What a pass over the memories returns, and the default memory budget of a pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_CHUNK_BYTES = 64 << 20


@dataclass
class PassResult:
    """What one pass over the memories yields for a batch of states v."""

    out: torch.Tensor  # (B, d) float32: Ξᵀ softmax(β Ξ v); (B, 0) when not asked for
    lse: torch.Tensor  # (B,) float32: log Σ_μ exp(β ξ_μ·v)  (= -inf for an empty support)
    top_scores: torch.Tensor  # (B, k) float32: the k largest h_μ = ξ_μ·v
    top_rows: torch.Tensor  # (B, k) int64: their rows (-1 when fewer than k rows exist)
