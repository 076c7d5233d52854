"""Snapshot export and import of a cluster bank (docs/snapshot-format.md).

Export: the gathered view (gathered.py: every shard's snapshot from one active replica,
concatenated in shard order) written as one file with the bank's config — the file a
one-shard or in-process sharded bank holding the memories in that order exports.

Import (`POST /v1/banks/{name}/snapshot`, `?shards=K`): the file's config (K shards if
given) becomes a new cluster bank, placed as `POST /v1/banks` places one (its checks and
refusals); its memories are routed to their shards by id, in the file's order, and every
live replica of every shard restores its part (the catch-up path, `ShardReplica.restore`)
under one write sequence number, so the import is acknowledged only when it is durable on
every live replica. A failed import deletes the new bank's replicas and leaves the table
as it was (with `replace`, the old bank is deleted only once the new one is in).
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from lam_engine import BankConfig
from lam_engine.config import validate_bank_name
from lam_engine.errors import BankExistsError
from lam_engine.results import BankInfo
from lam_engine.shards import split
from lam_engine.store import snapshot as snapshot_io

from .calls import unsupported
from .gathered import gathered, write
from .replica import BANK, replica_config
from .router import ClusterBank

# The engine is backend.ClusterEngine, which imports this module: typed loosely here so
# that the imports stay a DAG.
ClusterEngine = Any


def export_snapshot(engine: ClusterEngine, name: str, fileobj: BinaryIO) -> None:
    bank = engine._bank(name)
    view = gathered(bank, engine.created_at(name))
    write(fileobj, view.snapshot, config=bank.config.to_dict())


def _refuse_fading(snap: snapshot_io.Snapshot, config: BankConfig) -> None:
    """A bank with a half-life keeps its strengths as log-priors at the router's reference
    time (forgetting.py); a file's strengths are not rebased to it on import yet. Strengths
    without a half-life, lifetimes and texts are restored as they are."""
    if config.half_life_s is None:
        return
    t = snap.times or {}
    if any(x != 1 for x in t.get("strengths", [])):
        raise unsupported("a snapshot with strengths into a bank with a half-life")


def restore(bank: ClusterBank, snap: snapshot_io.Snapshot) -> None:
    """Every live replica of every shard becomes its part of `snap` (module docstring)."""
    config = replica_config(bank.config.to_dict()).to_dict()
    with bank._write:
        seq = next(bank._seq)
        for s, pos in enumerate(split(snap.ids, bank.config.shards)):
            f = io.BytesIO()
            snapshot_io.write_snapshot(
                f,
                name=BANK,
                config=config,
                created_at=snap.created_at,
                ids=[snap.ids[p] for p in pos],
                vectors=snap.vectors[pos],
                payloads=[snap.payloads[p] for p in pos],
                texts=None if snap.texts is None else [snap.texts[p] for p in pos],
                times=None if snap.times is None else {
                    k: [col[p] for p in pos] for k, col in snap.times.items()
                },
            )  # fmt: skip
            bank._all_live(s, "restore", f.getvalue(), seq, acked=seq)


def import_snapshot(
    engine: ClusterEngine,
    name: str,
    fileobj: BinaryIO,
    *,
    replace: bool = False,
    shards: int | None = None,
    max_bytes: int | None = None,
) -> BankInfo:
    validate_bank_name(name)
    snap = snapshot_io.read_snapshot(fileobj, max_bytes=max_bytes)
    config = BankConfig.from_dict(snap.config)
    config = config if shards is None else config.with_changes(shards=shards)
    _refuse_fading(snap, config)
    with engine._table:
        old, old_meta = engine._banks.get(name), engine._meta.get(name)
        if old is not None and not replace:
            raise BankExistsError(f"bank {name!r} exists (use replace=true)", {"bank": name})
        if old is not None:
            # Out of the table while the new one is made (create_bank would find it); the
            # coordinator file is rewritten only by create_bank and below.
            del engine._banks[name], engine._meta[name]
        try:
            engine.create_bank(name, config)  # the checks and refusals of POST /v1/banks
        except BaseException:
            _put_back(engine, name, old, old_meta)
            raise
        new = engine._banks[name]
        try:
            restore(new, snap)
            engine._meta[name]["created_at"] = snap.created_at  # the round trip is exact
            engine._save()
        except BaseException:
            del engine._banks[name], engine._meta[name]
            _put_back(engine, name, old, old_meta)
            new.destroy()
            raise
    if old is not None:
        old.destroy()
    return engine.bank_info(name)


def _put_back(
    engine: ClusterEngine, name: str, old: ClusterBank | None, meta: dict[str, Any] | None
) -> None:
    if old is not None and meta is not None:
        engine._banks[name], engine._meta[name] = old, meta
    engine._save()
