"""The in-process shard: one row block of a sharded bank, a `MemoryBank` and its prefilter.

It implements the `Shard` protocol with the one-bank passes (`kernels.model_b_pass`, the
candidate pass of retrieval), so a sharded bank in one process is the reference that a
cluster's shard replicas must match.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..bank import MemoryBank
from ..filters import Filter
from ..index import Prefilter
from ..kernels import DEFAULT_CHUNK_BYTES, candidate_pass, gather_rows, model_b_pass
from ..math.bound import log_tail
from ..math.merge import Partials
from ..retrieval import CandidateIndex
from ..selection import SelectedBank, SelectedIndex, visible
from .protocol import ShardPartials


class LocalShard:
    """A `Shard` over `bank` (a shard's memories, or a filtered view of them) and `index`."""

    def __init__(
        self,
        bank: MemoryBank,
        index: Prefilter | CandidateIndex | None,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self.bank = bank
        self.index = index
        self.chunk_bytes = chunk_bytes

    def restricted(self, flt: Filter | None) -> LocalShard | None:
        # The memories a read sees now: alive, not expired, passing `flt` (selection.py).
        mask = visible(self.bank, flt)
        if mask is None:
            return self if self.bank.count else None
        if not mask.any():
            return None
        view = SelectedBank(self.bank, mask)
        index = self.index
        if index is not None:
            index = SelectedIndex(index, self.bank.count, view.count)
        return LocalShard(view, index, chunk_bytes=self.chunk_bytes)

    @property
    def count(self) -> int:
        return self.bank.count

    @property
    def has_index(self) -> bool:
        return self.index is not None

    def max_norm(self) -> float:
        return self.bank.max_norm() if self.bank.count else 0.0

    def log_mass(self) -> float:
        return self.bank.log_mass() if self.bank.count else -math.inf

    def _keys(self, rows: torch.Tensor) -> torch.Tensor:
        """Global keys of view rows (B, k); −1 stays −1."""
        r = rows.cpu().numpy()
        keys = self.bank.keys[np.clip(r, 0, None)] if len(self.bank.keys) else np.zeros_like(r)
        return torch.from_numpy(np.where(r >= 0, keys, -1).astype(np.int64))

    def dense(
        self, states: torch.Tensor, beta: float, *, top_k: int, need_out: bool
    ) -> ShardPartials:
        bank = self.bank
        res = model_b_pass(
            bank.xi,
            states.to(bank.device),
            beta,
            bias=bank.bias,
            top_k=min(top_k, bank.count),
            chunk_bytes=self.chunk_bytes,
            need_out=need_out,
        )
        return ShardPartials(_partials(res.out, res.lse, res.top_scores, self._keys(res.top_rows)))

    def candidates(
        self, states: torch.Tensor, beta: float, *, k_candidates: int, top_k: int,
        need_out: bool = True,
    ) -> ShardPartials:  # fmt: skip
        """As `retrieval.retrieve_b_prefiltered`'s pass, over this shard's candidates.

        With `need_out=False` (the pass at the returned state) the candidates' ξ·v are the
        index's own scores (`Prefilter`: the vectors are kept as stored), so their rows are
        neither gathered nor scored again; `out` is then (B, 0)."""
        bank, index = self.bank, self.index
        assert index is not None
        n = bank.count
        k = min(k_candidates, n)
        v = states.to(bank.device)
        # The state as the memories' dtype holds it, as the dense passes and the one-bank
        # prefiltered pass take it (retrieval.py): then the index's scores are those passes'.
        v_np = np.ascontiguousarray(v.to(bank.xi.dtype).float().cpu().numpy())
        scores, keys = index.search(v_np, k)
        rows_np = bank.rows_for_keys(keys)
        if need_out:
            rows = torch.from_numpy(rows_np).to(bank.device)
            xi_c = gather_rows(bank.xi, rows.clamp_min(0))  # (B, k, d)
            out, lse, h = candidate_pass(xi_c, v, beta, rows >= 0)
            h_np = h.cpu().numpy()
        else:
            h_np = np.where(rows_np >= 0, scores, np.float32(-np.inf))
            lse = torch.from_numpy(np.logaddexp.reduce(np.float64(beta) * h_np, axis=1))
            out = torch.empty(h_np.shape[0], 0)
            rows, h = torch.from_numpy(rows_np), torch.from_numpy(h_np)
        tail = log_tail(h_np, n, beta)
        top_h, idx = torch.topk(h.cpu(), min(top_k, k), dim=1)
        top_rows = torch.gather(rows.cpu(), 1, idx)
        top_rows = torch.where(torch.isfinite(top_h), top_rows, torch.full_like(top_rows, -1))
        return ShardPartials(_partials(out, lse, top_h, self._keys(top_rows)), log_tail=tail)


def _partials(
    out: torch.Tensor, lse: torch.Tensor, top_scores: torch.Tensor, top_keys: torch.Tensor
) -> Partials:
    """A finished pass (out = V/S, lse = m + log S) as partials: m = lse, S = 1 (0 if empty)."""
    p = Partials.of_softmax(out.float().cpu(), lse.float().cpu())
    p.top_scores, p.top_rows = top_scores.float().cpu(), top_keys
    if p.top_scores.numel():
        p.top_scores = torch.where(top_keys >= 0, p.top_scores, -math.inf)
    return p


class MergedIndex:
    """Several shards' indexes as one `CandidateIndex`: the top-k of the union of their
    top-k (keys are global, so the union needs no renumbering)."""

    def __init__(self, parts: list[Prefilter]) -> None:
        self._parts = parts

    @property
    def exact_topk(self) -> bool:
        return all(p.exact_topk for p in self._parts)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = [p.search(queries, k) for p in self._parts]
        scores = np.concatenate([f[0] for f in found], axis=1)  # (B, S·k)
        keys = np.concatenate([f[1] for f in found], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, 1), np.take_along_axis(keys, best, 1)
