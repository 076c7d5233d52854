"""ShardReplica: one replica of one shard, an Engine with its own durable store (a Ray actor).

The actor's constructor opens (or reopens, after a restart) its Engine in
`<node data dir>/replicas/<bank>/<shard>` (`bank`: the router's `<name>.<incarnation>`)
and creates the shard's bank there, so a replica that Ray restarts reloads its own store.
Writes carry the router's sequence number: a write at or below the last one applied is
acknowledged without applying it again (a retried write never duplicates; upserts and
deletes by id are idempotent anyway, so a crash between the commit and the sequence file
costs one harmless re-apply).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_engine import BankConfig, Engine
from lam_engine.errors import BankNotFoundError
from lam_engine.filters import Filter, parse_filter
from lam_engine.results import MemoryRecord
from lam_engine.shards import LocalShard

BANK = "shard"


def replica_dir(bank: str, shard: int, base: str | None = None) -> Path:
    root = base or os.environ.get("LAM_NODE_DATA_DIR") or os.path.join(os.getcwd(), "lam-node")
    return Path(root) / "replicas" / bank / str(shard)


class ShardReplica:
    """One shard replica (see the module docstring); every method takes whole batches."""

    def __init__(self, bank: str, shard: int, config: dict[str, Any], base: str | None = None):
        torch.set_num_threads(1)  # actors share the node's cores; Ray sets OMP_NUM_THREADS too
        self.directory = replica_dir(bank, shard, base)
        self.engine = Engine.open(self.directory)
        # The router prepares every batch (normalized, content ids): stored as given here.
        cfg = BankConfig.from_dict({**config, "shards": 1, "replicas": 1, "normalize": False})
        try:
            self.engine.bank_info(BANK)
        except BankNotFoundError:
            self.engine.create_bank(BANK, cfg)
        self._seq_file = self.directory / "applied_seq"

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

    def restricted(self, flt: Any = None) -> tuple[int, float, bool]:
        """(count, max ‖ξ‖, has an index) of the memories passing `flt` (Shard protocol)."""
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            shard = LocalShard(slot.bank, slot.prefilter).restricted(_flt(flt))
            if shard is None:
                return 0, 0.0, slot.prefilter is not None
            return shard.count, shard.max_norm(), shard.has_index

    # ---- writes ---------------------------------------------------------------------------
    def upsert(self, seq: int, ids: list[str], vectors: np.ndarray, payloads: list[Any]) -> int:
        if seq > self.applied():
            self.engine.upsert(BANK, vectors, ids, payloads)
            self._applied_to(seq)
        return self.engine.bank_info(BANK).count

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
        self, states: np.ndarray, beta: float, k_candidates: int, top_k: int, flt: Any = None
    ) -> dict[str, Any] | None:
        """As `dense`, over this shard's prefilter candidates, with its `log_tail`."""
        return self._pass(
            flt,
            lambda sh, v: sh.candidates(v, beta, k_candidates=k_candidates, top_k=top_k),
            states,
        )

    def _pass(self, flt: Any, run: Any, states: np.ndarray) -> dict[str, Any] | None:
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
            return {
                "m": p.m.numpy(),
                "s": p.s.numpy(),
                "v": p.v.numpy(),
                "top_scores": p.top_scores.numpy(),
                "keys": keys,
                "ids": ids,
                "payloads": payloads,
                "log_tail": ans.log_tail,
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
