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
merged exactly (math/merge.py) by the router: the same descent as one bank.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lam_engine import BankConfig
from lam_engine.config import QUERY
from lam_engine.errors import EmptySelectionError
from lam_engine.math.merge import Partials
from lam_engine.retrieval import QueryParams, _descend
from lam_engine.shards import ShardPartials, split
from lam_engine.shards.ops import merge_round

from .replica import ShardReplica

ACTIVE, CATCHING_UP, DEAD = "active", "catching_up", "dead"
CALL_TIMEOUT_S = 60.0
POS_BITS = 32  # a merged top-k entry is (shard << POS_BITS) | its position in that shard's list


def _ray() -> Any:
    import ray

    return ray


PROBE_EVERY_S = 2.0  # how often a dead replica is asked whether it is back


@dataclass
class Replica:
    handle: Any
    node: str
    state: str = ACTIVE
    next_probe: float = 0.0


@dataclass
class ClusterBank:
    """A bank of K shards × R replicas (see the module docstring)."""

    name: str
    config: BankConfig
    nodes: list[str]  # node names, as in cluster.json
    replicas: list[list[Replica]] = field(default_factory=list)
    timeout_s: float = CALL_TIMEOUT_S  # a replica that does not answer a write in it is dead
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    # One write at a time (as the engine's writer mutex), and one catch-up at a time.
    _write: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def create(cls, name: str, config: BankConfig, nodes: list[str]) -> ClusterBank:
        ray = _ray()
        if config.replicas > len(nodes):
            raise ValueError(f"replicas ({config.replicas}) > nodes ({len(nodes)})")
        remote = ray.remote(ShardReplica)
        bank = cls(name, config, nodes)
        cfg = config.to_dict()
        for s in range(config.shards):
            row = []
            for r in range(config.replicas):
                node = nodes[(s + r) % len(nodes)]
                handle = remote.options(
                    name=f"lam:{name}:{s}:{r}",
                    lifetime="detached",
                    max_restarts=-1,
                    max_task_retries=0,
                    num_cpus=0,
                    resources={f"lam_node_{node}": 0.001},
                    get_if_exists=True,
                ).remote(name, s, cfg)
                row.append(Replica(handle, node))
            bank.replicas.append(row)
        ray.get([rep.handle.count.remote() for row in bank.replicas for rep in row])
        seq = max(ray.get([rep.handle.applied.remote() for row in bank.replicas for rep in row]))
        bank._seq = itertools.count(seq + 1)
        return bank

    def destroy(self) -> None:
        ray = _ray()
        for row in self.replicas:
            for rep in row:
                ray.kill(rep.handle, no_restart=True)

    # ---- replica health -----------------------------------------------------------------
    def _revive(self, s: int) -> None:
        """Catch up every replica of shard s that is not active but answers again."""
        if all(rep.state == ACTIVE for rep in self.replicas[s]):
            return
        # Under the write lock: no write lands between the peer's snapshot and the restore.
        with self._write:
            self._revive_locked(s)

    def _revive_locked(self, s: int) -> None:
        ray = _ray()
        row = self.replicas[s]
        live = [rep for rep in row if rep.state == ACTIVE]
        for rep in row:
            if rep.state == ACTIVE or not live or time.monotonic() < rep.next_probe:
                continue
            rep.next_probe = time.monotonic() + PROBE_EVERY_S
            try:
                ray.get(rep.handle.applied.remote(), timeout=0.5)
            except Exception:
                continue  # still gone (or restarting)
            rep.state = CATCHING_UP
            data, seq = ray.get(live[0].handle.snapshot.remote(), timeout=CALL_TIMEOUT_S)
            ray.get(rep.handle.restore.remote(data, seq), timeout=CALL_TIMEOUT_S)
            rep.state = ACTIVE

    def _all_live(self, s: int, method: str, *args: Any) -> list[Any]:
        """Call `method` on every active replica of shard s; failing ones are marked dead."""
        ray = _ray()
        self._revive(s)
        row = [rep for rep in self.replicas[s] if rep.state == ACTIVE]
        refs = [getattr(rep.handle, method).remote(*args) for rep in row]
        out = []
        for rep, ref in zip(row, refs, strict=True):
            try:
                out.append(ray.get(ref, timeout=self.timeout_s))
            except Exception:
                rep.state = DEAD
                rep.next_probe = time.monotonic() + PROBE_EVERY_S
        if not out:
            raise RuntimeError(f"shard {s} of bank {self.name!r}: no live replica")
        return out

    def _reader(self, s: int) -> Replica:
        self._revive(s)
        for rep in self.replicas[s]:
            if rep.state == ACTIVE:
                return rep
        raise RuntimeError(f"shard {s} of bank {self.name!r}: no active replica")

    def describe(self) -> list[dict[str, Any]]:
        """The "shards" of this bank in GET /v1/cluster."""
        return [
            {"shard": s, "replicas": [{"node_id": rep.node, "state": rep.state} for rep in row]}
            for s, row in enumerate(self.replicas)
        ]

    # ---- writes -------------------------------------------------------------------------
    def upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[Any] | None = None):
        """Store a batch with explicit ids; returns the bank's count after it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        payloads = payloads or [None] * len(ids)
        seq = next(self._seq)
        for s, pos in enumerate(split(ids, self.config.shards)):
            if pos:
                self._all_live(
                    s,
                    "upsert",
                    seq,
                    [ids[p] for p in pos],
                    vectors[pos],
                    [payloads[p] for p in pos],
                )
        return self.count()

    def delete(self, ids: list[str]) -> int:
        done = 0
        with self._write:
            seq = next(self._seq)
            for s, pos in enumerate(split(ids, self.config.shards)):
                if pos:
                    done += self._all_live(s, "delete", seq, [ids[p] for p in pos])[0]
        return done

    # ---- reads --------------------------------------------------------------------------
    def _read_all(self, method: str, *args: Any) -> list[Any]:
        """`method` on one active replica of every shard, all at once; a replica that fails
        is marked dead and the shard asked again on another (R tries in all)."""
        ray = _ray()
        out: list[Any] = [None] * self.config.shards
        todo = list(range(self.config.shards))
        for _ in range(self.config.replicas):
            reps = {s: self._reader(s) for s in todo}
            refs = {s: getattr(reps[s].handle, method).remote(*args) for s in todo}
            failed = []
            for s in todo:
                try:
                    out[s] = ray.get(refs[s], timeout=self.timeout_s)
                except Exception:
                    reps[s].state = DEAD
                    reps[s].next_probe = time.monotonic() + PROBE_EVERY_S
                    failed.append(s)
            todo = failed
            if not todo:
                return out
        raise RuntimeError(f"bank {self.name!r}: shards {todo} answered from no replica")

    def count(self, flt: Any = None) -> int:
        return int(sum(self._read_all("count", flt)))

    def records(self, s: int) -> list[tuple[list[str], np.ndarray, list[Any]]]:
        """Every replica's (ids, vectors, payloads) of shard s (the node-loss test compares)."""
        ray = _ray()
        return [ray.get(rep.handle.records.remote()) for rep in self.replicas[s]]

    def _round(
        self, v: torch.Tensor, beta: float, top_k: int, need_out: bool, flt: Any
    ) -> tuple[list[ShardPartials], list[dict[str, Any]]]:
        states = np.ascontiguousarray(v.float().numpy())
        raw = self._read_all("dense", states, beta, top_k, need_out, flt)
        answers, kept = [], []
        for s, a in enumerate(raw):
            if a is None:
                continue
            scores = torch.from_numpy(np.array(a["top_scores"]))
            pos = torch.arange(scores.shape[1], dtype=torch.int64)[None].expand_as(scores)
            code = torch.where(torch.isfinite(scores), (s << POS_BITS) | pos, -1)
            parts = Partials(
                m=torch.from_numpy(np.array(a["m"])),
                s=torch.from_numpy(np.array(a["s"])),
                v=torch.from_numpy(np.array(a["v"])),
                top_scores=scores,
                top_rows=code.contiguous(),
            )
            answers.append(ShardPartials(parts))
            kept.append({**a, "shard": s})
        if not answers:
            raise EmptySelectionError("no memory passes the filter", {"bank": self.name})
        return answers, kept

    def query(
        self,
        queries: np.ndarray,
        *,
        beta: float | None = None,
        steps: int = QUERY.steps,
        tol: float = QUERY.tol,
        top_k: int = QUERY.top_k,
        flt: Any = None,
    ) -> list[dict[str, Any]]:
        """Model B retrieval, dense: one merge round per step (API.md result shape)."""
        params = QueryParams(
            beta=self.config.beta if beta is None else beta, steps=steps, tol=tol, top_k=top_k
        )
        cue = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        n = self.count(flt)
        k = min(top_k, n)
        last_answers: dict[str, Any] = {}

        def one_pass(v: torch.Tensor, last: bool) -> Any:
            answers, kept = self._round(v, params.beta, k if last else 0, not last, flt)
            last_answers["kept"] = {a["shard"]: a for a in kept}
            return merge_round(answers, k if last else 0)

        v, taken, converged, res = _descend(cue, None, params, one_pass)
        energy = 0.5 * (v.double() ** 2).sum(dim=1) - res.lse.double() / params.beta
        weights = torch.exp(params.beta * res.top_scores - res.lse[:, None])
        by_shard = last_answers["kept"]
        out = []
        for i in range(v.shape[0]):
            matches = []
            for code, w, sc in zip(
                res.top_keys[i].tolist(), weights[i].tolist(), res.top_scores[i].tolist(),
                strict=True,
            ):  # fmt: skip
                if code < 0 or not math.isfinite(sc):
                    continue
                a = by_shard[code >> POS_BITS]
                j = code & ((1 << POS_BITS) - 1)
                matches.append(
                    {"id": a["ids"][i][j], "weight": w, "score": sc, "payload": a["payloads"][i][j]}
                )
            out.append(
                {
                    "state": v[i].float().numpy(),
                    "steps": int(taken[i]),
                    "converged": bool(converged[i]),
                    "energy": float(energy[i]),
                    "matches": matches,
                }
            )
        return out
