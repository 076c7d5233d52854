"""The gathered view of a cluster bank: every memory, fetched from its shards, in one place.

Models A and C (query, energy), dynamics, diagnostics and snapshot export need every memory
at once, as the in-process sharded bank's *global view* does (lam_engine/shards/bank.py).
Here the router asks one active replica of every shard for its shard's snapshot (all shards
at once), concatenates them in shard order, and imports the result into an in-memory
`Engine` as a `shards`-shard bank: the reads then run the in-process sharded bank's own code
(`BankTable.query`, `.energy`, `.dynamics`, `.diagnostics`: the global view, its shards'
prefilters searched as one for index diagnostics). Exact, not distributed: O(N) transfer
and an O(N) build per write generation.

The view is cached on the `ClusterBank`, keyed by its write sequence (router.WriteSequence):
every write or delete takes a new number, so a cached view is served only while no write
has happened since it was read. It is read under the bank's write lock, so it never holds
half of a write.

Order: replicas keep no global insertion key (each keeps its own shard's insertion order),
so the view's order is shard 0's memories in its insertion order, then shard 1's, ...
(the order of the cluster's scroll). Where an answer depends on order (ties of Models A/C's
top-k, of diagnostics' worst-first list; the rows of an exported snapshot), it is that of a
one-shard bank that was given the memories in this order.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lam_engine import BankConfig, Engine
from lam_engine.store import snapshot as snapshot_io

from .router import ClusterBank

GATHERED_DEVICE = "cpu"  # the router's copy: it serves reads that are exact, not fast


@dataclass
class Gathered:
    """A cluster bank's memories read at write sequence `seq` (module docstring)."""

    seq: int
    snapshot: snapshot_io.Snapshot
    _engine: Engine | None = None
    _building: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.snapshot.name

    def engine(self) -> Engine:
        """An in-memory engine holding the memories as one in-process sharded bank
        `name` (built on first use: export needs only the snapshot)."""
        with self._building:
            return self._engine or self._build()

    def _build(self) -> Engine:
        snap = self.snapshot
        config = BankConfig.from_dict(snap.config)
        # The in-process bank: the same shards, no replicas (those are the cluster's).
        f = io.BytesIO()
        write(f, snap, config=config.with_changes(replicas=1).to_dict())
        f.seek(0)
        engine = Engine.open(None, default_device=GATHERED_DEVICE)
        engine.import_snapshot(snap.name, f)
        self._engine = engine
        return engine


def write(fileobj: Any, snap: snapshot_io.Snapshot, *, config: dict[str, Any]) -> None:
    """`snap` as a snapshot file (docs/snapshot-format.md) with `config`."""
    snapshot_io.write_snapshot(
        fileobj,
        name=snap.name,
        config=config,
        created_at=snap.created_at,
        ids=snap.ids,
        vectors=snap.vectors,
        payloads=snap.payloads,
        texts=snap.texts,
        times=snap.times,
    )


def concatenated(
    parts: list[snapshot_io.Snapshot], *, name: str, config: BankConfig, created_at: str
) -> snapshot_io.Snapshot:
    """The shards' snapshots as one, in shard order (module docstring: the order)."""
    ids = [i for p in parts for i in p.ids]
    vectors = (
        np.concatenate([p.vectors for p in parts])
        if parts
        else np.zeros((0, config.dim), np.float32)
    )
    payloads = [x for p in parts for x in p.payloads]
    texts = None
    if any(p.texts is not None for p in parts):
        texts = [t for p in parts for t in (p.texts or [None] * len(p.ids))]
    times = None
    if parts and all(p.times is not None for p in parts):
        keys = list(parts[0].times or {})
        times = {k: [x for p in parts for x in (p.times or {})[k]] for k in keys}
    return snapshot_io.Snapshot(
        name=name,
        config=config.to_dict(),
        created_at=created_at,
        ids=ids,
        vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        payloads=payloads,
        texts=texts,
        times=times,
    )


def gathered(bank: ClusterBank, created_at: str) -> Gathered:
    """The bank's gathered view at its current write sequence (cached: module docstring)."""
    with bank._write:  # no write in flight: the view holds whole writes only
        seq = bank._seq.last
        cached = bank.gathered
        if cached is not None and cached[0] == seq:
            return cached[1]
        answers = bank.read_all("snapshot")
        parts = [snapshot_io.read_snapshot(io.BytesIO(data)) for data, _ in answers]
        view = Gathered(
            seq, concatenated(parts, name=bank.name, config=bank.config, created_at=created_at)
        )
        # The view it replaces is dropped, not closed: a read may still be using it.
        bank.gathered = (seq, view)
        return view
