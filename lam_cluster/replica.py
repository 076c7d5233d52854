"""ShardReplica: one replica of one shard, an Engine with its own durable store (a Ray actor).

The actor's constructor opens (or reopens, after a restart) its Engine in
`<node data dir>/replicas/<bank>/<shard>` and creates the shard's bank there, so a replica
that Ray restarts reloads its own store. Writes carry the router's sequence number: a write
at or below the last one applied is acknowledged without applying it again (a retried
write never duplicates; upserts and deletes by id are idempotent anyway, so a crash
between the commit and the sequence file costs one harmless re-apply).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lam_engine import BankConfig, Engine
from lam_engine.errors import BankNotFoundError
from lam_engine.filters import parse_filter
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
        cfg = BankConfig.from_dict({**config, "shards": 1, "replicas": 1})
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

    # ---- reads ----------------------------------------------------------------------------
    def get(self, memory_id: str) -> tuple[np.ndarray | None, Any]:
        rec = self.engine.get_memory(BANK, memory_id)
        return rec.vector, rec.payload

    def records(self) -> tuple[list[str], np.ndarray, list[Any]]:
        """(ids, vectors, payloads) in this replica's store order: what replicas compare."""
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            return slot.bank.snapshot_arrays()

    def dense(
        self, states: np.ndarray, beta: float, top_k: int, need_out: bool, flt: Any = None
    ) -> dict[str, Any] | None:
        """The shard's partials (math/merge.py) as numpy, with its top-k ids and payloads;
        None when no memory (passing `flt`) is here."""
        slot = self.engine._slot(BANK)
        with slot.lock.read():
            shard = LocalShard(slot.bank, slot.prefilter).restricted(
                None if flt is None else parse_filter(flt)
            )
            if shard is None:
                return None
            ans = shard.dense(
                torch.from_numpy(np.array(states)), beta, top_k=top_k, need_out=need_out
            )
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
                "ids": ids,
                "payloads": payloads,
                "count": shard.count,
                "max_norm": shard.max_norm(),
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
