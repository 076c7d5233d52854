"""ShardReplica: one replica of one shard, an Engine with its own durable store (a Ray actor).

The actor's constructor opens (or reopens, after a restart) its Engine in
`<node data dir>/replicas/<bank>/<shard>` (`bank`: the router's `<name>.<incarnation>`)
and creates the shard's bank there, so a replica that Ray restarts reloads its own store.
Writes carry the router's sequence number: a write at or below the last one applied is
acknowledged without applying it again (a retried write never duplicates; upserts and
deletes by id are idempotent anyway, so a crash between the commit and the sequence file
costs one harmless re-apply).

Time is the router's (lam_cluster/forgetting.py): every call comes through `at` with the
router's (now, reference time of the log-priors), so every replica of every shard judges
lifetimes, stores times and keeps its log-prior bias at the same instants and in the same
units, and the partials merge as in one process. The replica's engine runs no reaper: the
router deletes expired memories through the replicated delete, so replicas stay equal.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_engine import BankConfig, Engine
from lam_engine.clock import ManualClock
from lam_engine.errors import BankNotFoundError
from lam_engine.fading import rebase
from lam_engine.filters import Filter, parse_filter
from lam_engine.results import MemoryRecord
from lam_engine.shards import LocalShard

BANK = "shard"


def replica_config(config: dict[str, Any]) -> BankConfig:
    """A replica's bank: the shard of the cluster bank's config, storing vectors as given
    (the router prepares every batch: normalized, content ids)."""
    return BankConfig.from_dict({**config, "shards": 1, "replicas": 1, "normalize": False})


def replica_dir(bank: str, shard: int, base: str | None = None) -> Path:
    root = base or os.environ.get("LAM_NODE_DATA_DIR") or os.path.join(os.getcwd(), "lam-node")
    return Path(root) / "replicas" / bank / str(shard)


class ShardReplica:
    """One shard replica (see the module docstring); every method takes whole batches."""

    def __init__(self, bank: str, shard: int, config: dict[str, Any], base: str | None = None):
        torch.set_num_threads(1)  # actors share the node's cores; Ray sets OMP_NUM_THREADS too
        self.directory = replica_dir(bank, shard, base)
        self.clock = ManualClock()  # the router's time, set by every call (`at`)
        self.engine = Engine.open(self.directory, clock=self.clock, background=False)
        # The router prepares every batch (normalized, content ids, embedded texts): stored
        # as given here; a text bank's model is loaded by the router only.
        cfg = replica_config(config)
        try:
            self.engine.bank_info(BANK)
        except BankNotFoundError:
            self.engine.create_bank(BANK, cfg, load_embedder=False)
        self._seq_file = self.directory / "applied_seq"

    def at(self, ctx: tuple[float, float | None], method: str, *args: Any) -> Any:
        """`method(*args)` at the router's time: ctx = (now, the log-priors' reference time,
        None without a half-life). Ray runs an actor's calls one at a time."""
        t, t_ref = ctx
        self.clock.set(t)
        if t_ref is not None:
            self._align(float(t_ref))
        return getattr(self, method)(*args)

    def _align(self, t_ref: float) -> None:
        """Bring the bias to the router's reference time (after a restart or a restore the
        store's own; a no-op otherwise)."""
        slot = self.engine._slot(BANK)
        if slot.bank.priors.t_ref == t_ref:
            return
        with slot.lock.write():
            rebase(slot.bank, t_ref)

    # ---- state ----------------------------------------------------------------------------
    def applied(self) -> int:
        try:
            return int(self._seq_file.read_text())
        except (OSError, ValueError):
            return 0

    def _applied_to(self, seq: int) -> None:
        tmp = self._seq_file.with_suffix(".tmp")
        tmp.write_text(str(seq))
        os.replace(tmp, self._seq_file)

    def node_id(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def count(self, flt: Any = None) -> int:
        return self.engine.count(BANK, flt)

    def info(self) -> tuple[int, int]:
        """(count, memory_bytes) of this replica's shard."""
        b = self.engine.bank_info(BANK)
        return b.count, b.memory_bytes

    def restricted(self, flt: Any = None) -> tuple[int, float, bool, float, bool]:
        """(count, max ‖ξ‖, has an index, log Σ s_μ(now), has a prior) of the memories
        passing `flt` (Shard protocol; the prior: strengths or a half-life, bank-wide)."""
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            shard = LocalShard(slot.bank, slot.prefilter).restricted(_flt(flt))
            prior = slot.bank.has_prior
            if shard is None:
                return 0, 0.0, slot.prefilter is not None, -math.inf, prior
            return shard.count, shard.max_norm(), shard.has_index, shard.log_mass(), prior

    def expired(self) -> tuple[list[str], float]:
        """The ids expired by now, and the earliest expiry of the others (inf: none)."""
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            bank, t = slot.bank, self.clock.now()
            ids = [bank.id_at(int(r)) for r in bank.expired_rows(t)]
            exp = bank.priors.expires_at[: bank._n]
            later = exp[exp > t]
            return ids, float(later.min()) if len(later) else math.inf

    # ---- writes ---------------------------------------------------------------------------
    def upsert(
        self,
        seq: int,
        ids: list[str],
        vectors: np.ndarray,
        payloads: list[Any],
        strengths: list[float] | None = None,
        expires_at: list[float | None] | None = None,
        texts: list[str | None] | None = None,
    ) -> int:
        """Store a prepared batch; `strengths`, `expires_at` (unix s, None: never) and
        `texts` per id, as the router resolved them (None: all 1, never, no text)."""
        if seq > self.applied():
            self.engine.upsert(
                BANK, vectors, ids, payloads, strengths=strengths, expires_at=expires_at,
                texts=texts,
            )  # fmt: skip
            self._applied_to(seq)
        return self.engine.bank_info(BANK).count

    def reinforce(self, seq: int, ids: list[str], strength: float | None) -> int:
        n = 0
        if seq > self.applied():
            n = self.engine.reinforce(BANK, ids, strength)
            self._applied_to(seq)
        return n

    def delete(self, seq: int, ids: list[str]) -> int:
        n = 0
        if seq > self.applied():
            n = self.engine.delete_memories(BANK, ids)
            self._applied_to(seq)
        return n

    def delete_where(self, seq: int, flt: Any) -> int:
        n = 0
        if seq > self.applied():
            n = self.engine.delete_memories(BANK, filter=flt)
            self._applied_to(seq)
        return n

    def update_config(self, seq: int, config: dict[str, Any]) -> None:
        """PATCH: take what API.md lets PATCH change (beta, prefilter, payload_index) from
        the cluster bank's new `config`, durably (the replica's store)."""
        if seq > self.applied():
            cfg = replica_config(config)
            self.engine.update_bank(
                BANK, beta=cfg.beta, prefilter=cfg.prefilter, payload_index=dict(cfg.payload_index)
            )
            self._applied_to(seq)

    def config(self) -> dict[str, Any]:
        """This replica's bank config (as its store keeps it)."""
        return self.engine.bank_info(BANK).config.to_dict()

    def drop(self) -> None:
        """Delete this replica's store (its bank is deleted): a new bank of the same name
        starts empty."""
        self.engine.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- reads ----------------------------------------------------------------------------
    # get and scroll answer the replica's records whole: API.md's fields beyond vector and
    # payload (strength, strength_now, the times) are the store's, as on one bank.
    def get(self, memory_id: str) -> MemoryRecord:
        return self.engine.get_memory(BANK, memory_id)

    def vectors(self, ids: list[str]) -> list[np.ndarray | None]:
        return [self.engine.get_memory(BANK, i).vector for i in ids]

    def scroll(
        self, limit: int, cursor: str | None, with_vectors: bool, flt: Any
    ) -> tuple[list[MemoryRecord], str | None]:
        return self.engine.scroll(BANK, limit, cursor, with_vectors=with_vectors, filter=flt)

    def records(self) -> tuple[list[str], np.ndarray, list[Any]]:
        """(ids, vectors, payloads) in this replica's store order: what replicas compare."""
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            return slot.bank.snapshot_arrays()

    def dense(
        self, states: np.ndarray, beta: float, top_k: int, need_out: bool, flt: Any = None
    ) -> dict[str, Any] | None:
        """The shard's partials (math/merge.py) as numpy, with its top-k's local keys, ids
        and payloads; None when no memory (passing `flt`) is here."""
        return self._pass(
            flt, lambda sh, v: sh.dense(v, beta, top_k=top_k, need_out=need_out), states
        )

    def candidates(
        self,
        states: np.ndarray,
        beta: float,
        k_candidates: int,
        top_k: int,
        flt: Any = None,
        need_out: bool = True,
    ) -> dict[str, Any] | None:
        """As `dense`, over this shard's prefilter candidates, with its `log_tail`."""
        return self._pass(
            flt,
            lambda sh, v: sh.candidates(
                v, beta, k_candidates=k_candidates, top_k=top_k, need_out=need_out
            ),
            states,
        )

    def _pass(self, flt: Any, run: Any, states: np.ndarray) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            shard = LocalShard(slot.bank, slot.prefilter).restricted(_flt(flt))
            if shard is None:
                return None
            ans = run(shard, torch.from_numpy(np.array(states)))
            p = ans.parts
            keys = p.top_rows.numpy()
            rows = slot.bank.rows_for_keys(keys)
            ids = [[slot.bank.id_at(int(r)) if r >= 0 else None for r in row] for row in rows]
            payloads = [
                [slot.bank.payload_at(int(r)) if r >= 0 else None for r in row] for row in rows
            ]
            # The top-k's log-priors (the router ranks the union by weight) and texts.
            bias = slot.bank.bias
            lp = np.zeros(rows.shape, dtype=np.float32)
            if bias is not None and rows.size:
                b = bias.float().cpu().numpy()
                lp = np.where(rows >= 0, b[np.maximum(rows, 0)], 0.0).astype(np.float32)
            texts = slot.bank.texts
            return {
                "log_priors": lp,
                "texts": [[texts.get(i) if i is not None else None for i in r] for r in ids]
                if texts
                else None,
                "m": p.m.numpy(),
                "s": p.s.numpy(),
                "v": p.v.numpy(),
                "top_scores": p.top_scores.numpy(),
                "keys": keys,
                "ids": ids,
                "payloads": payloads,
                "log_tail": ans.log_tail,
                # The pass as this replica ran it (observe.py: compute vs the call's cost).
                "compute_s": time.perf_counter() - t0,
            }

    # ---- catch-up -------------------------------------------------------------------------
    def snapshot(self) -> tuple[bytes, int]:
        f = io.BytesIO()
        self.engine.export_snapshot(BANK, f)
        return f.getvalue(), self.applied()

    def restore(self, data: bytes, seq: int) -> int:
        """Become a copy of a peer (its snapshot at its sequence `seq`)."""
        self.engine.import_snapshot(BANK, io.BytesIO(data), replace=True)
        self._applied_to(seq)
        return self.engine.bank_info(BANK).count


def _flt(flt: Any) -> Filter | None:
    """A filter as the router sends it: parsed already (a query's), or JSON."""
    return flt if flt is None or isinstance(flt, Filter) else parse_filter(flt)
