"""The Shard protocol: what a router asks of one shard of a bank, a batch of states at a time.

A shard is a row block of Ξ (the memories whose ids hash to it). For a batch of states it
returns the log-sum-exp partials of `math/merge.py` (m, S, V, its top-k with global keys);
the router merges them exactly (`merge.merge`) and so answers as the unsplit bank. One call
per shard per batch per step: never one per query. The in-process shard (`local.LocalShard`)
and a cluster's shard replica implement the same methods, so the router logic is shared.

Keys are the bank's global memory keys (the store's `seq`, unique over all shards), so top-k
entries from different shards merge and order without knowing where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..filters import Filter
from ..math.merge import Partials


@dataclass
class ShardPartials:
    """One shard's answer for states (B, d): partials with `top_rows` = global keys."""

    parts: Partials
    # log of the shard's left-out term (N_s − k_s)·e^{β s_k} of the prefilter certificate
    # (math/bound.py `log_tail`); None for a dense pass (nothing left out).
    log_tail: np.ndarray | None = None


class Shard(Protocol):
    """One shard of a bank (see the module docstring)."""

    def restricted(self, flt: Filter | None) -> Shard | None:
        """This shard as if it held only the memories passing `flt` (a request's filter,
        evaluated once for all of its steps); None when none passes."""
        ...

    @property
    def count(self) -> int:
        """Memories of this shard."""
        ...

    def max_norm(self) -> float:
        """max ‖ξ‖ over this shard's memories; 0 for none."""
        ...

    def log_mass(self) -> float:
        """log Σ_μ s_μ(now) over this shard's memories (log N_s when every s_μ = 1): the
        shards' part of E's constant β⁻¹ log Σ s_μ."""
        ...

    def dense(
        self,
        states: torch.Tensor,
        beta: float,
        *,
        top_k: int,
        need_out: bool,
    ) -> ShardPartials:
        """A Model B pass over every memory of the shard."""
        ...

    def candidates(
        self, states: torch.Tensor, beta: float, *, k_candidates: int, top_k: int,
        need_out: bool = True,
    ) -> ShardPartials:  # fmt: skip
        """A Model B pass over the shard's prefilter candidates, with its `log_tail`;
        `need_out=False`: without Ξᵀ p (`out` (B, 0)), as `dense`'s."""
        ...

    @property
    def has_index(self) -> bool:
        """Whether the shard has a prefilter index (`candidates` is then allowed)."""
        ...
