"""Query and energy on a sharded bank: one pass per shard, the partials merged exactly.

The router side of the `Shard` protocol. A multi-step query does one merge round per step
(every shard's partials for the batch, then `math.merge.merge`), the same descent as one
bank (`retrieval._descend`), so states, energies and weights are the one-shard bank's within
float32 rounding. With a prefilter every shard answers over its own candidates and returns
its part of the certificate (`math.bound.log_tail`); the merged bound (`merged_bound`) still
bounds the mass of every memory left out, and queries above the tolerance fall back to the
exact pass over all shards, as on one bank.

Models A and C, and filtered queries on them, run the one-bank code on the bank's global
view (shards/bank.py): exact, gathered, not distributed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import ops
from ..config import check_beta
from ..errors import EmptySelectionError
from ..filters import Filter, parse_filter
from ..inputs import QueryInput
from ..math.bound import merged_bound
from ..math.merge import finish, merge
from ..math.strengths import log_mass
from ..results import EnergyResult, QueryBatchResult
from ..retrieval import QueryParams, Retrieval, _descend, merge_rows, prepare_cue
from ..selection import SelectedBank, visible
from ..vectors import require_finite
from .bank import ShardedBank
from .protocol import Shard, ShardPartials


@dataclass
class _Merged:
    out: torch.Tensor  # (B, d) or (B, 0)
    lse: torch.Tensor  # (B,)
    top_scores: torch.Tensor  # (B, k)
    top_keys: torch.Tensor  # (B, k) global keys, −1 = none
    eps: np.ndarray | None = None  # (B,) merged certificate of a candidate round


def merge_round(
    answers: Sequence[ShardPartials], k: int, rank_bias: KeyBias | None = None
) -> _Merged:
    """The exact merge of one round of shard answers (math/merge.py). With strengths, each
    shard's top-k is by weight (β h + log-prior), so the union's is too: `rank_bias` gives
    the log-prior / β of global keys (None: all s = 1, by score alone)."""
    p = merge([a.parts for a in answers], 0 if rank_bias is not None else k)
    if rank_bias is not None and k > 0:
        scores = torch.cat([a.parts.top_scores for a in answers], dim=1)
        keys = torch.cat([a.parts.top_rows for a in answers], dim=1)
        _, idx = torch.topk(scores + rank_bias(keys), min(k, scores.shape[1]), dim=1)
        p.top_scores, p.top_rows = torch.gather(scores, 1, idx), torch.gather(keys, 1, idx)
    out, lse = finish(p)
    eps = None
    tails = [a.log_tail for a in answers if a.log_tail is not None]
    if tails:
        eps = merged_bound(lse.double().numpy(), np.stack(tails))
    return _Merged(out, lse, p.top_scores[:, :k], p.top_rows[:, :k], eps)


def _read_view(bank: ShardedBank, flt: Filter | None, name: str) -> Any:
    """The global view as a read sees it: alive, not expired, passing `flt`."""
    mask = visible(bank, flt)
    return bank if mask is None else SelectedBank(bank, mask, name)


def restricted(shards: Sequence[Shard], flt: Filter | None, name: str) -> list[Shard]:
    """The shards over the memories passing `flt` (dropping those with none)."""
    live = [r for r in (s.restricted(flt) for s in shards) if r is not None]
    if not live:
        if flt is None:
            raise EmptySelectionError("the bank has no memories", {"bank": name})
        raise EmptySelectionError("no memory passes the filter", {"bank": name})
    return live


KeyBias = Callable[[torch.Tensor], torch.Tensor]


def key_bias(bank: ShardedBank, beta: float) -> KeyBias | None:
    """log-prior / β of global keys (B, k) from the bank's view (0 for −1); None: no prior."""
    if bank.bias is None:
        return None

    def of(keys: torch.Tensor) -> torch.Tensor:
        return bank.key_log_prior(keys) / beta

    return of


def _dense(
    bank: ShardedBank,
    shards: Sequence[Shard],
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, _Merged]:
    n = sum(s.count for s in shards)
    k = min(params.top_k, n)
    rank = key_bias(bank, params.beta)

    def one_pass(v: torch.Tensor, last: bool) -> _Merged:
        answers = [
            s.dense(v, params.beta, top_k=k if last else 0, need_out=not last) for s in shards
        ]
        return merge_round(answers, k if last else 0, rank)

    return _descend(cue, known, params, one_pass)


def _retrieval(
    bank: ShardedBank, v: torch.Tensor, beta: float, res: _Merged, steps: Any, conv: Any
) -> Retrieval:
    # The log-priors' common part (math/strengths.py) cancels in p but not in E.
    energy = 0.5 * (v.double() ** 2).sum(dim=1) - (res.lse.double() + bank.bias_offset()) / beta
    logit = beta * res.top_scores
    rank = key_bias(bank, beta)
    if rank is not None and res.top_keys.numel():  # weights of the matches: p ∝ s exp(β h)
        logit = logit + beta * rank(res.top_keys)
    weights = torch.exp(logit - res.lse[:, None])
    keys = res.top_keys.numpy()
    return Retrieval(
        states=v.float(),
        steps=steps,
        converged=conv,
        energy=energy.numpy(),
        top_rows=bank.rows_for_keys(keys) if keys.size else keys,
        top_weights=weights.numpy(),
        top_scores=res.top_scores.numpy(),
    )


def retrieve_dense(
    bank: ShardedBank,
    shards: Sequence[Shard],
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
) -> Retrieval:
    v, steps, conv, res = _dense(bank, shards, cue, known, params)
    return _retrieval(bank, v, params.beta, res, steps, conv)


def retrieve_prefiltered(
    bank: ShardedBank,
    shards: Sequence[Shard],
    cue: torch.Tensor,
    known: torch.Tensor | None,
    params: QueryParams,
    k_candidates: int,
) -> Retrieval:
    """Every shard over its own candidates; ε the largest merged bound along the descent."""
    n = sum(s.count for s in shards)
    kk = min(params.top_k, k_candidates, n)
    eps = np.zeros(cue.shape[0])

    def one_pass(v: torch.Tensor, last: bool) -> _Merged:
        answers = [
            s.candidates(v, params.beta, k_candidates=k_candidates, top_k=kk, need_out=not last)
            for s in shards
        ]
        res = merge_round(answers, kk)
        assert res.eps is not None
        eps[:] = np.maximum(eps, res.eps)
        return res

    v, steps, conv, res = _descend(cue, known, params, one_pass)
    raw = _retrieval(bank, v, params.beta, res, steps, conv)
    raw.missed = eps
    raw.prefiltered = np.ones(cue.shape[0], dtype=bool)
    return raw


def query(bank: ShardedBank, q: QueryInput, *, name: str, chunk_bytes: int) -> QueryBatchResult:
    """A validated query batch on a sharded bank (the caller holds the bank's read lock)."""
    if bank.config.model != "B":
        return ops.query(_read_view(bank, q.filter, name), None, q, chunk_bytes=chunk_bytes)
    shards = restricted(bank.shards(chunk_bytes), q.filter, name)
    params = QueryParams(
        beta=bank.config.beta if q.beta is None else q.beta,
        steps=q.steps,
        tol=q.tol,
        top_k=q.top_k,
    )
    cue = prepare_cue(bank, q.queries, q.mask).cpu()
    known = None if q.mask is None else torch.from_numpy(q.mask)
    cfg = bank.config.prefilter
    n = sum(s.count for s in shards)
    # Strengths: the exact pass (the shards' candidate passes carry no log-priors yet).
    use_index = all(s.has_index for s in shards) and not q.exact and not bank.has_prior
    if not use_index or n < cfg.min_size or cfg.k > n:
        raw = retrieve_dense(bank, shards, cue, known, params)
    else:
        raw = retrieve_prefiltered(bank, shards, cue, known, params, cfg.k)
        assert raw.missed is not None
        fallback = np.nonzero(raw.missed > cfg.tolerance)[0]
        if len(fallback):
            sub = known[fallback] if known is not None else None
            exact = retrieve_dense(bank, shards, cue[fallback], sub, params)
            raw = merge_rows(raw, exact, fallback)
    found = raw.top_rows >= 0
    require_finite(
        raw.states, raw.energy, raw.top_weights[found], raw.top_scores[found], beta=params.beta
    )
    return ops._to_results(bank, raw, with_payload=q.with_payload, with_vectors=q.with_vectors)


def energy(
    bank: ShardedBank,
    states: np.ndarray,
    *,
    name: str,
    beta: Any = None,
    constants: bool = False,
    gradient: bool = False,
    filter: Any = None,
    chunk_bytes: int,
    mask: np.ndarray | None = None,
) -> EnergyResult:
    """E(v) (and ∇E) under a sharded bank: Model B by one merged pass, A and C on the view.
    `mask`: the read's rows of the global view (selection.visible: passing the filter, not
    expired; None: all), over which E's constant log Σ s_μ runs."""
    flt = filter if filter is None or isinstance(filter, Filter) else parse_filter(filter)
    if bank.config.model != "B":
        return ops.energy(
            _read_view(bank, flt, name) if mask is None else SelectedBank(bank, mask, name),
            states,
            beta=beta,
            constants=constants,
            gradient=gradient,
            chunk_bytes=chunk_bytes,
        )
    b = check_beta(beta, bank.config.beta)
    shards = restricted(bank.shards(chunk_bytes), flt, name)
    v = torch.from_numpy(states)
    res = merge_round([s.dense(v, b, top_k=0, need_out=gradient) for s in shards], 0)
    e = 0.5 * (v.double() ** 2).sum(dim=1) - (res.lse.double() + bank.bias_offset()) / b
    if constants:
        if bank.has_prior:  # the restricted shards' masses, their common offset included
            log_n = log_mass(np.asarray([s.log_mass() for s in shards]), 0.0)
        else:
            log_n = math.log(sum(s.count for s in shards))
        m = max(s.max_norm() for s in shards)
        e = e + log_n / b + 0.5 * m**2
    g = (v.float() - res.out).numpy() if gradient else None
    out = e.numpy()
    require_finite(out, *([] if g is None else [g]))
    return EnergyResult(energies=out, gradients=g)
