"""ClusterBank: one sharded, replicated bank on a Ray cluster, seen from the router.

Placement: replica r of shard s lives on node (s + r) mod n of the nodes given (their
`lam_node_<name>` custom resources, which survive a node's restart where Ray's node ids do
not), so the replicas of a shard are on different nodes when R ≤ n. Actors are named
`lam:<bank>:<shard>:<replica>`, detached, `max_restarts=-1`: Ray brings a replica back when
its node returns, and its constructor reloads its own store.

Writes: the batch is split by owning shard (lam_engine/shards/placement.py) and sent, with
one router sequence number, to every replica of that shard at once; the write is
acknowledged when every live replica has committed it. A replica that fails is marked dead
and gets no reads; the next write or read that finds it answering again catches it up
(a peer's snapshot at the peer's sequence) before it is active again.

Reads: one call per shard per step to an active replica, all shards at once, the partials
merged exactly (math/merge.py) by the router: the same descent as one bank. Query and energy
are lam_engine/shards/ops.py's own code, run over `shard.RemoteShard`s (the `Shard`
protocol of lam_engine/shards over Ray): filters and the prefilter included.

An engine error raised inside a replica (a bad filter, an unknown id) is the caller's
fault, not the replica's: it is raised again as itself and the replica stays active. A shard
with no live replica is `ShardUnavailableError` (503 shard_unavailable, Retry-After), for
reads and writes alike.

Time: every replica call goes through `ShardReplica.at` with the router's (now, t_ref) of
the request (lam_cluster/forgetting.py), so lifetimes and fading strengths are judged at
one instant on every shard and the shards' log-prior biases share one reference time.

Every replica call goes through `submit` / `wait`, which tell the bank's observer
(observe.py: metrics, benchmarks) its shard, method, outcome, latency and sizes; replica
state changes, catch-ups and replicas marked dead are told too.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lam_engine import BankConfig
from lam_engine.bank import MemoryBank, PreparedBatch
from lam_engine.clock import SYSTEM_CLOCK, Clock
from lam_engine.config import QUERY
from lam_engine.inputs import QueryInput
from lam_engine.results import QueryBatchResult, UpsertResult
from lam_engine.shards import ops as shard_ops
from lam_engine.shards import shard_config, split

from .calls import ray_module
from .observe import NULL, Observer
from .replica import ShardReplica
from .replica_calls import (
    CALL_TIMEOUT_S,
    DEAD,
    Replica,
    ReplicaCalls,
)
from .shard import ClusterView
from .timing import Ctx, Timing


class WriteSequence:
    """The router's write sequence numbers (`next`), remembering the last one handed out:
    the bank's state changes only with a new one, so it keys what was read of the bank
    (the gathered view, gathered.py)."""

    def __init__(self, start: int) -> None:
        self.last = start - 1

    def __next__(self) -> int:
        self.last += 1
        return self.last


@dataclass
class ClusterBank(ReplicaCalls):
    """A bank of K shards × R replicas (see the module docstring)."""

    name: str
    config: BankConfig
    nodes: list[str]  # node names, as in cluster.json
    replicas: list[list[Replica]] = field(default_factory=list)
    timeout_s: float = CALL_TIMEOUT_S  # a replica that does not answer a write in it is dead
    _seq: WriteSequence = field(default_factory=lambda: WriteSequence(1))
    # One write at a time (as the engine's writer mutex), and one catch-up at a time: the
    # replicas apply writes in sequence order and skip any at or below their last one.
    _write: threading.RLock = field(default_factory=threading.RLock)
    # An empty bank of the shards' config: it validates and prepares batches (normalized,
    # content ids) exactly as one bank would, and holds no memories.
    _prep: MemoryBank | None = None
    # The gathered view (gathered.py) and the write sequence it was read at.
    gathered: tuple[int, Any] | None = None
    timing: Timing = field(default_factory=Timing)  # the router's clock and t_ref
    # The earliest expiry of a memory (a lower bound; −inf: unknown, ask the replicas).
    next_expiry: float = -math.inf
    observer: Observer = NULL
    # Per shard, the sequence of its last acknowledged write (None: not known, a router that
    # found no replica of it answering): a replica holding it may serve with no peer active.
    _acked: list[int | None] = field(default_factory=list)
    # Seconds this thread spent waiting on replica calls: a read's own router time is its
    # wall time less these (`timed`).
    _waits: threading.local = field(default_factory=threading.local)

    @classmethod
    def create(
        cls,
        name: str,
        config: BankConfig,
        nodes: list[str],
        incarnation: str = "",
        clock: Clock = SYSTEM_CLOCK,
        observer: Observer = NULL,
    ) -> ClusterBank:
        """Place (or find again: `get_if_exists`) the bank's replicas. `incarnation` tells
        banks of one name apart over time: a replica store left on a node that was down
        when its bank was deleted is never taken for a new bank's."""
        ray = ray_module()
        key = f"{name}.{incarnation}" if incarnation else name  # "." is in no bank name
        if config.replicas > len(nodes):
            raise ValueError(f"replicas ({config.replicas}) > nodes ({len(nodes)})")
        remote = ray.remote(ShardReplica)
        bank = cls(name, config, nodes, timing=Timing(clock), observer=observer)
        bank._prep = MemoryBank(shard_config(config), torch.device("cpu"))
        cfg = config.to_dict()
        for s in range(config.shards):
            row = []
            for r in range(config.replicas):
                node = nodes[(s + r) % len(nodes)]
                handle = remote.options(
                    name=f"lam:{key}:{s}:{r}",
                    lifetime="detached",
                    max_restarts=-1,
                    max_task_retries=0,
                    num_cpus=0,
                    resources={f"lam_node_{node}": 0.001},
                    get_if_exists=True,
                ).remote(key, s, cfg)
                row.append(Replica(handle, node, shard=s, index=r))
            bank.replicas.append(row)
        bank._seq = WriteSequence(bank._attach() + 1)
        for row in bank.replicas:
            for rep in row:
                observer.replica_state(name, rep.shard, rep.index, rep.state)
        return bank

    def _attach(self) -> int:
        """Each replica's applied sequence; one that does not answer, or is behind its
        shard's best (it missed writes while no router watched, e.g. across a router
        restart), is dead until caught up. Returns the highest sequence applied."""
        calls = [[self.submit(rep, "applied") for rep in row] for row in self.replicas]
        top = 0
        self._acked = []
        for row, row_calls in zip(self.replicas, calls, strict=True):
            applied = []
            for c in row_calls:
                try:
                    applied.append(int(self.wait(c)))
                except Exception:
                    applied.append(-1)
            best = max(applied)
            self._acked.append(best if best >= 0 else None)
            for rep, seq in zip(row, applied, strict=True):
                if seq < best:
                    rep.state, rep.next_probe = DEAD, 0.0  # told at create, with the rest
            top = max(top, best)
        return top

    def destroy(self) -> None:
        """Delete the bank: every replica's store, then its actor (a dead replica's store
        stays on its node's disk until a bank of that name reuses the directory)."""
        ray = ray_module()
        for row in self.replicas:
            for rep in row:
                # A replica gone already has nothing a live bank would serve.
                with contextlib.suppress(Exception):
                    ray.get(rep.handle.drop.remote(), timeout=5.0)
                ray.kill(rep.handle, no_restart=True)
        self.observer.forget(self.name)

    # ---- replica health -----------------------------------------------------------------
    # ---- calls at the router's time (forgetting.py) -----------------------------------------
    def ctx(self) -> Ctx:
        """A read's (now, t_ref)."""
        return self.timing.read(self.config.half_life_s)

    @property
    def write_lock(self) -> threading.RLock:
        return self._write

    def next_seq(self) -> int:
        """The next write's sequence number (the caller holds the write lock)."""
        return int(next(self._seq))

    def all_live(
        self, s: int, method: str, *args: Any, ctx: Ctx | None = None, acked: int | None = None
    ) -> list[Any]:
        """A write's call on every live replica of shard s (forgetting.reinforce's)."""
        return self._all_live(s, method, *args, ctx=ctx, acked=acked)

    def describe(self) -> list[dict[str, Any]]:
        """The "shards" of this bank in GET /v1/cluster."""
        return [
            {"shard": s, "replicas": [{"node_id": rep.node, "state": rep.state} for rep in row]}
            for s, row in enumerate(self.replicas)
        ]

    # ---- writes -------------------------------------------------------------------------
    def upsert(self, ids: Any, vectors: Any, payloads: list[Any] | None = None) -> UpsertResult:
        """Store a batch (ids may be None: content ids), prepared as one bank would."""
        return self.store(self.prepare(vectors, ids, payloads))

    def prepare(self, vectors: Any, ids: Any, payloads: Any, **forgetting: Any) -> PreparedBatch:
        """Validate and prepare a batch exactly as one bank would (`MemoryBank.prepare`)."""
        assert self._prep is not None
        return self._prep.prepare(vectors, ids, payloads, **forgetting)

    def store(
        self,
        batch: PreparedBatch,
        texts: list[str | None] | None = None,
        *,
        t: float | None = None,
        gate: Any = None,
    ) -> UpsertResult:
        """Route a prepared batch (`texts`: per unique id) to the owners' replicas with one
        sequence number, at time t; `gate(bank, batch, texts)` → (batch, texts, skipped)
        runs first under the write lock (the novelty gate: lam_cluster/novelty.py)."""
        skipped = None
        with self._write:
            if gate is not None:
                batch, texts, skipped = gate(self, batch, texts)
                if not batch.ids:  # everything skipped: no write
                    return UpsertResult(ids=[], count=self.count(), skipped=skipped)
            ctx = self.timing.write(
                self.config.half_life_s, self.timing.clock.now() if t is None else t
            )
            seq = next(self._seq)
            for s, pos in enumerate(split(batch.unique_ids, self.config.shards)):
                if not pos:
                    continue
                self._all_live(
                    s,
                    "upsert",
                    seq,
                    [batch.unique_ids[p] for p in pos],
                    batch.vectors[pos],
                    [batch.payloads[p] for p in pos],
                    None if batch.strengths is None else batch.strengths[pos].tolist(),
                    None if batch.expires is None else _expiries(batch.expires[pos]),
                    None if texts is None else [texts[p] for p in pos],
                    ctx=ctx,
                    acked=seq,
                )
            if batch.expires is not None and len(batch.expires):
                self.next_expiry = min(self.next_expiry, float(batch.expires.min()))
        return UpsertResult(ids=batch.ids, count=self.count(), skipped=skipped)

    def delete(self, ids: list[str] | None = None, flt: Any = None) -> int:
        """Delete by id (routed to the owners) or by filter (on every shard)."""
        done = 0
        with self._write:
            seq = next(self._seq)
            if ids is None:
                for s in range(self.config.shards):
                    done += self._all_live(s, "delete_where", seq, flt, acked=seq)[0]
                return done
            unique = list(dict.fromkeys(ids))
            for s, pos in enumerate(split(unique, self.config.shards)):
                if pos:
                    done += self._all_live(s, "delete", seq, [unique[p] for p in pos], acked=seq)[0]
        return done

    # ---- reads --------------------------------------------------------------------------
    def count(self, flt: Any = None) -> int:
        return int(sum(self.read_all("count", flt)))

    def records(self, s: int) -> list[tuple[list[str], np.ndarray, list[Any]]]:
        """Every replica's (ids, vectors, payloads) of shard s (the node-loss test compares)."""
        ray = ray_module()
        return [ray.get(rep.handle.records.remote()) for rep in self.replicas[s]]

    def query(
        self,
        queries: Any,
        *,
        beta: float | None = None,
        steps: int = QUERY.steps,
        tol: float = QUERY.tol,
        top_k: int = QUERY.top_k,
        flt: Any = None,
        chunk_bytes: int = 64 << 20,
    ) -> QueryBatchResult:
        """Model B retrieval: lam_engine/shards/ops.py over this bank's remote shards."""
        q = QueryInput.build(
            np.asarray(queries, dtype=np.float32), dim=self.config.dim, beta=beta, steps=steps,
            tol=tol, top_k=top_k, filter=flt,
        )  # fmt: skip
        with self.timed():
            return shard_ops.query(ClusterView(self), q, name=self.name, chunk_bytes=chunk_bytes)  # type: ignore[arg-type]


def _expiries(exp: np.ndarray) -> list[float | None]:
    """Unix seconds per memory as a replica's `expires_at` column (None: never)."""
    return [None if math.isinf(x) else float(x) for x in exp.tolist()]
