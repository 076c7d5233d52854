"""The novelty gate on a cluster bank (API.md "Novelty-gated store").

`gate(...)` is handed to `ClusterBank.store`, which runs it under the bank's write lock:
the judgment and the write are atomic against every other write to the bank, as
`lam_engine/novelty.gate` is under the engine's writer lock. The bank's part of each
request row's energy is the merged steps-0 answer (one Model B pass per shard at the bank's
β, merged exactly by shards/ops.py: log Σ_μ s_μ e^{β ξ_μ·x} and the largest weight); the
batch's own part (earlier accepted rows, in order) is `lam_engine.novelty.judge_rows`, the
one-bank code. So the skipped rows, their energies and their nearest ids are one bank's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lam_engine.bank import PreparedBatch
from lam_engine.errors import EmptySelectionError
from lam_engine.math.novelty import BANK
from lam_engine.novelty import _request_rows, _subset, check_tau, judge_rows
from lam_engine.results import Skipped
from lam_engine.shards import ops as shard_ops

from .shard import ClusterView

if TYPE_CHECKING:
    from .router import ClusterBank

Texts = list[str | None] | None
Gate = Callable[["ClusterBank", PreparedBatch, Texts], tuple[PreparedBatch, Texts, list[Skipped]]]


def gate(if_novel: Any, payloads: Sequence[dict[str, Any] | None] | None, chunk_bytes: int) -> Gate:
    """The gate of `{"if_novel": {"energy_above": τ}}` for a batch whose request payloads
    are `payloads` (τ checked here, before anything is sent)."""
    tau = check_tau(if_novel)

    def run(
        bank: ClusterBank, batch: PreparedBatch, texts: Texts
    ) -> tuple[PreparedBatch, Texts, list[Skipped]]:
        x = _request_rows(batch)  # (B, d) as stored
        beta = float(bank.config.beta)
        lse, best, nearest = _bank_part(bank, x, beta, chunk_bytes)
        accepted, energy, ref = judge_rows(torch.from_numpy(x), lse, best, beta, tau, chunk_bytes)
        skipped = []
        for r in np.flatnonzero(~accepted).tolist():
            near = nearest[r] if ref[r] == BANK else batch.ids[int(ref[r])]
            assert near is not None  # a skipped row has a finite E: some memory weighs
            skipped.append(Skipped(r, batch.ids[r], float(energy[r]), near))
        if accepted.all():
            return batch, texts, skipped
        kept = _subset(batch, x, payloads, accepted)
        if texts is not None:
            by_id = dict(zip(batch.unique_ids, texts, strict=True))
            texts = [by_id[i] for i in kept.unique_ids]
        return kept, texts, skipped

    return run


def _bank_part(
    bank: ClusterBank, x: np.ndarray, beta: float, chunk_bytes: int
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """lse (B,), the largest logit (B,) (−inf: no memory) and its id, from the merged pass."""
    b = x.shape[0]
    lse, best = np.full(b, -np.inf), np.full(b, -np.inf)
    nearest: list[str | None] = [None] * b
    view = ClusterView(bank)
    try:
        shards = shard_ops.restricted(view.shards(chunk_bytes), None, bank.name)
    except EmptySelectionError:  # an empty bank: every row is judged by the batch alone
        return lse, best, nearest
    v = torch.from_numpy(x)
    answers = [s.dense(v, beta, top_k=1, need_out=False) for s in shards]
    res = shard_ops.merge_round(answers, 1, shard_ops.key_bias(view, beta))  # type: ignore[arg-type]
    lse = res.lse.double().numpy()
    best = beta * res.top_scores[:, 0].double().numpy()
    if view.has_prior:  # the per-row log-prior is part of the weight
        best = best + view.key_log_prior(res.top_keys).double().numpy()[:, 0]
    rows = view.rows_for_keys(res.top_keys.numpy())[:, 0]
    best = np.where((rows >= 0) & np.isfinite(lse), best, -np.inf)
    nearest = [view.id_at(int(r)) if r >= 0 else None for r in rows]
    return lse, best, nearest
