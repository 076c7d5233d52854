"""Forgetting on a cluster bank (API.md "Forgetting"): the router's time, reinforce, expiry.

One bank, one time. The router reads its clock once per request and every replica call of
that request carries it (`ShardReplica.at`), so lifetimes are judged, times stored and
strengths faded at the same instant on every shard. The log-priors' reference time t_ref
(math/strengths.py) is the router's too: it moves only on a write, by the rule one bank
uses (`RowPriors.set_rows`: the first write, or a bias grown past `REBASE_AT` nats), and
every replica rebases to it before it answers, so every shard's bias is a per-row log-prior
in the same units and the shards' partials merge unchanged — what `ShardedBank._align` does
in one process (the clock and t_ref: timing.py). The common part of log s_μ(t),
−c (t − t_ref), is the router's (`Timing.offset`): it is added to E, never to p.

Expiry is driven by the router (its `Reaper` thread over `ClusterEngine.reap`): replicas run
no reaper of their own, whose deletes on their own clocks would make them diverge. An
expired memory is hidden from every read at once (each replica's `selection.visible` at the
router's now); the router then deletes it with the replicated delete (one sequence number
for every replica), under the bank's write lock so that no store of the same id comes
between the judgment and the delete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lam_engine.errors import InvalidParameterError
from lam_engine.forgetting import check_strength, resolve_batch
from lam_engine.shards import split

from .router import ClusterBank


def resolve(
    bank: ClusterBank,
    vectors: Any,
    ids: Any,
    strengths: Sequence[Any] | None,
    ttl_s: Sequence[Any] | None,
    expires_at: Sequence[Any] | None,
    t: float,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The batch's strengths and expiries, validated as one bank validates them at t."""
    default = bank.config.default_ttl_s
    if strengths is None and ttl_s is None and expires_at is None and default is None:
        return None, None
    n = len(ids) if ids is not None else len(vectors) if hasattr(vectors, "__len__") else 0
    return resolve_batch(n, strengths, ttl_s, expires_at, default_ttl_s=default, now=t)


def reinforce(bank: ClusterBank, ids: Any, strength: float | None) -> int:
    """t_μ = now (and s_μ = strength) for the ids held and alive, routed to their owners with
    one sequence number; returns how many (unknown or expired ids are not counted)."""
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidParameterError("ids must be a list of strings")
    s = None if strength is None else check_strength(strength)
    unique = list(dict.fromkeys(ids))
    done = 0
    with bank.write_lock:
        ctx = bank.timing.write(bank.config.half_life_s, bank.timing.clock.now())
        seq = bank.next_seq()
        for shard, pos in enumerate(split(unique, bank.config.shards)):
            if pos:
                mine = [unique[p] for p in pos]
                done += bank.all_live(shard, "reinforce", seq, mine, s, ctx=ctx, acked=seq)[0]
    return int(done)


def reap(bank: ClusterBank) -> float:
    """Delete the bank's memories expired by now (replicated); returns its next expiry."""
    t = bank.timing.clock.now()
    if t < bank.next_expiry:
        return bank.next_expiry
    with bank.write_lock:
        found = bank.read_all("expired", ctx=bank.timing.read(bank.config.half_life_s, t))
        ids = [i for gone, _ in found for i in gone]
        if ids:
            bank.delete(ids)
        bank.next_expiry = min((float(nxt) for _, nxt in found), default=math.inf)
    return bank.next_expiry
