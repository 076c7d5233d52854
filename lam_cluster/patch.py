"""PATCH of a cluster bank: what API.md lets PATCH change (beta, prefilter, payload_index).

The new config (lam_engine.engine.patched: the engine's own validation) goes first to every
live replica of every shard under one write sequence number (`ShardReplica.update_config`:
durable in the replica's store, so it survives a replica's restart), then into the
coordinator file (atomically, as `ClusterEngine._save` writes it), then into the router's
bank. A replica that is dead meanwhile is behind by that sequence number: it serves no
reads until it is caught up from a live peer's snapshot, which carries the peer's config.
A PATCH that fails part-way changes nothing the router serves; sent again, it is applied
again (replicas that have it already acknowledge it unchanged).

Forgetting (`default_ttl_s`, `half_life_s`) is refused as at creation (backend.py).
"""

from __future__ import annotations

from typing import Any

from lam_engine.config import PrefilterConfig
from lam_engine.engine import UNSET, patched
from lam_engine.results import BankInfo
from lam_engine.shards import shard_config

from .calls import unsupported

# The engine is backend.ClusterEngine, which imports this module: typed loosely here so
# that the imports stay a DAG.
ClusterEngine = Any


def update_bank(
    engine: ClusterEngine,
    name: str,
    *,
    beta: float | None = None,
    prefilter: PrefilterConfig | None = None,
    payload_index: dict[str, str] | None = None,
    default_ttl_s: Any = UNSET,
    half_life_s: Any = UNSET,
) -> BankInfo:
    bank = engine._bank(name)
    if any(x is not UNSET and x is not None for x in (default_ttl_s, half_life_s)):
        raise unsupported("forgetting (default_ttl_s, half_life_s)")
    # The table's lock before the bank's, as create_bank and import take them.
    with engine._table, bank._write:
        if engine._banks.get(name) is not bank:  # deleted or replaced meanwhile
            return engine.bank_info(name)
        config = patched(bank.config, beta=beta, prefilter=prefilter, payload_index=payload_index)
        if config != bank.config:
            seq = next(bank._seq)
            for s in range(config.shards):
                bank._all_live(s, "update_config", seq, config.to_dict(), acked=seq)
            engine._meta[name] = {**engine._meta[name], "config": config.to_dict()}
            engine._save()
            bank.config = config
            if bank._prep is not None:
                bank._prep.config = shard_config(config)
    return engine.bank_info(name)
