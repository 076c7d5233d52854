"""ShardedBank: a bank split into K row blocks by a stable hash of the id, in one process.

Each shard is a real `MemoryBank` of its own (its tensor, ids, payloads, payload indexes)
with its own prefilter index; queries and energies run one pass per shard and merge the
log-sum-exp partials exactly (`ops.py`). The store keeps the bank as one bank (one
transaction per batch, global `seq` keys), so durability, the write protocol and the
insertion order are the one-shard bank's.

To the engine a ShardedBank is a `MemoryBank`: writes (`prepare`, `apply`, `remove`, the
bulk loader) are routed to the owning shards, and the read interface (rows, ids, payloads,
keys, xi) is a *global view* in key order (insertion order, as one bank would keep it),
built lazily after a write. Reads that need every memory at once (dynamics, diagnostics,
Models A and C, scroll, filters over the whole bank) use that view and the one-bank code;
its `xi` gathers the shards (a copy, made per call: exact, not distributed).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..bank import MemoryBank, PreparedBatch
from ..bulk import Staged
from ..clock import SYSTEM_CLOCK, Clock
from ..config import BankConfig
from ..fading import rebase
from ..index import Prefilter, make_prefilter
from ..payload_index import PayloadIndexes
from ..priors import RowPriors, gathered
from ..selection import rebuild_indexes
from .loader import ShardedLoader
from .local import LocalShard, MergedIndex
from .placement import shard_of, split


def shard_config(config: BankConfig) -> BankConfig:
    """The config of one shard: the bank's, as a one-shard bank."""
    return dataclasses.replace(config, shards=1, replicas=1)


class _Order:
    """The global view: alive memories of all shards in key order."""

    def __init__(self, parts: list[MemoryBank]) -> None:
        shard, rows, keys = [], [], []
        for s, bank in enumerate(parts):
            alive = bank.alive_rows()
            rows.append(alive)
            keys.append(bank.keys[alive])
            shard.append(np.full(len(alive), s, dtype=np.int64))
        all_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        order = np.argsort(all_keys, kind="stable")
        self.keys = all_keys[order]  # (N,) ascending
        self.shard = np.concatenate(shard)[order] if shard else np.zeros(0, np.int64)
        self.row = np.concatenate(rows)[order] if rows else np.zeros(0, np.int64)
        self._parts = parts
        self._ids: list[str] | None = None
        self._payloads: list[dict[str, Any] | None] | None = None
        self._row_of: dict[str, int] | None = None
        self.priors: RowPriors | None = None  # gathered on demand (ShardedBank.priors)
        self.bias: torch.Tensor | None = None  # (N,) float32 log-priors, on demand

    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = [
                self._parts[s].id_at(int(r)) for s, r in zip(self.shard, self.row, strict=True)
            ]
        return self._ids

    def payloads(self) -> list[dict[str, Any] | None]:
        if self._payloads is None:
            self._payloads = [
                self._parts[s].payload_at(int(r)) for s, r in zip(self.shard, self.row, strict=True)
            ]
        return self._payloads

    def row_of(self) -> dict[str, int]:
        if self._row_of is None:
            self._row_of = {mid: g for g, mid in enumerate(self.ids())}
        return self._row_of


class ShardedBank(MemoryBank):
    """K shards of one bank (see the module docstring). Not thread-safe by itself: the
    engine's locks apply as to any bank (the lazy view has its own small lock)."""

    stages_appends = False  # the rows go to their shards by id, in apply

    def __init__(
        self, config: BankConfig, device: torch.device, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        # MemoryBank.__init__ is not called: the shards own the storage.
        self._config = config
        self.device = device
        self.clock = clock
        # Texts are kept by id (texts.py), so one dict serves the whole bank.
        self.texts: dict[str, str] = {}
        self.parts = [MemoryBank(shard_config(config), device, clock) for _ in range(config.shards)]
        self.dtype = self.parts[0].dtype
        self.prefilters: list[Prefilter | None] = [self._new_index() for _ in self.parts]
        self._order: _Order | None = None
        self._order_lock = threading.Lock()

    def _new_index(self) -> Prefilter | None:
        cfg = self._config
        if cfg.prefilter.kind == "none" or cfg.model != "B":
            return None
        return make_prefilter(cfg.prefilter, cfg.dim)

    # ---- config (PATCH): the shards follow -----------------------------------------------
    @property
    def config(self) -> BankConfig:
        return self._config

    @config.setter
    def config(self, config: BankConfig) -> None:
        old, self._config = self._config, config
        for bank in self.parts:
            bank.config = shard_config(config)
            if config.payload_index != old.payload_index:
                rebuild_indexes(bank)
        if config.prefilter != old.prefilter:
            self.prefilters = [self._new_index() for _ in self.parts]
            self.rebuild_indexes()
        self._changed()

    @property  # type: ignore[override]
    def indexes(self) -> PayloadIndexes | None:
        """The global view has no payload indexes (each shard has its own)."""
        return None

    @indexes.setter
    def indexes(self, value: Any) -> None:
        """`selection.rebuild_indexes` on the whole bank: the shards did it already."""

    def rebuild_indexes(self) -> None:
        """Fill every shard's prefilter from its memories."""
        for bank, pf in zip(self.parts, self.prefilters, strict=True):
            if pf is not None:
                pf.rebuild(bank.keys[bank.alive_rows()], bank.alive_vectors())

    def shards(self, chunk_bytes: int) -> list[LocalShard]:
        """The `Shard`s of this bank (the caller holds the bank's read lock)."""
        return [
            LocalShard(bank, pf, chunk_bytes=chunk_bytes)
            for bank, pf in zip(self.parts, self.prefilters, strict=True)
        ]

    def search_index(self, prefilter: Any = None) -> MergedIndex | None:
        """The shards' prefilters searched as one (diagnostics' nearest other memory)."""
        if any(pf is None for pf in self.prefilters):
            return None
        return MergedIndex([pf for pf in self.prefilters if pf is not None])

    def index_info(self, prefilter: Any = None) -> dict[str, Any]:
        """The description's "index": the shards' indexes side by side."""
        per = [{"kind": "none"} if pf is None else pf.describe() for pf in self.prefilters]
        return {
            "kind": self._config.prefilter.kind if self.prefilters[0] is not None else "none",
            "shards": per,
        }

    # ---- size ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return sum(bank.count for bank in self.parts)

    @property
    def memory_bytes(self) -> int:
        return sum(bank.memory_bytes for bank in self.parts)

    def shard_counts(self) -> list[int]:
        return [bank.count for bank in self.parts]

    def __contains__(self, memory_id: str) -> bool:
        return memory_id in self.parts[shard_of(memory_id, len(self.parts))]

    def holds_any(self, memory_ids: Sequence[str]) -> bool:
        return any(bank.holds_any(memory_ids) for bank in self.parts)

    def seqs_of(self, memory_ids: Sequence[str]) -> dict[str, int]:  # each from its own shard
        k = len(self.parts)
        return {i: self.parts[shard_of(i, k)].seqs_of((i,))[i] for i in memory_ids}

    # ---- writes, routed by id -------------------------------------------------------------
    def _changed(self) -> None:
        self._order = None

    def apply(
        self, batch: PreparedBatch, keys: list[int] | np.ndarray, staged: Staged | None = None
    ) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        for s, pos in enumerate(split(batch.unique_ids, len(self.parts))):
            if not pos:
                continue
            bank, pf = self.parts[s], self.prefilters[s]
            ids = [batch.unique_ids[p] for p in pos]
            sub = PreparedBatch(
                ids, ids, batch.vectors[pos], [batch.payloads[p] for p in pos],
                strengths=None if batch.strengths is None else batch.strengths[pos],
                expires=None if batch.expires is None else batch.expires[pos],
                stored_at=batch.stored_at,
            )  # fmt: skip
            replaced = np.asarray([i in bank for i in ids], dtype=bool)
            bank.apply(sub, keys[pos])
            if pf is not None:
                if replaced.any():
                    pf.remove(keys[pos][replaced])
                pf.add(keys[pos], sub.vectors)
        self._align()

    # ---- strengths and lifetimes: each shard keeps its rows' priors ------------------------
    def _align(self) -> None:
        """Bring every shard to one reference time of the log-priors (the latest), so their
        biases are in the same units and the partials merge unchanged (math/strengths.py);
        a shard is rebased only when another one moved (its first write, a rebase)."""
        t_ref = max(bank.priors.t_ref for bank in self.parts)
        for bank in self.parts:
            rebase(bank, t_ref)
        self._changed()

    def _set_priors(
        self,
        rows: np.ndarray,
        strength: np.ndarray,
        stored_at: np.ndarray,
        reinforced_at: np.ndarray,
        expires: np.ndarray,
    ) -> None:
        """`MemoryBank._set_priors` for rows of the global view, routed to their shards."""
        view = self._view()
        rows = np.asarray(rows, dtype=np.int64)
        for s, bank in enumerate(self.parts):
            mine = np.flatnonzero(view.shard[rows] == s)
            if len(mine):
                bank._set_priors(
                    view.row[rows[mine]], strength[mine], stored_at[mine], reinforced_at[mine],
                    expires[mine],
                )  # fmt: skip
        self._align()

    def set_half_life(self, half_life_s: float | None) -> None:
        t = self.clock.now()  # one reference time for every shard
        for bank in self.parts:
            bank.priors.set_half_life(half_life_s, bank._n, t)
            bank._rebias()
        self._changed()

    @property
    def has_prior(self) -> bool:
        return any(bank.priors.active for bank in self.parts)

    def bias_offset(self) -> float:
        return self.parts[0].priors.offset(self.clock.now())  # aligned: the same in every shard

    @property
    def next_expiry(self) -> float:
        return min(bank.next_expiry for bank in self.parts)

    def forgetting(self, memory_id: str, t: float) -> dict[str, Any] | None:
        return self.parts[shard_of(memory_id, len(self.parts))].forgetting(memory_id, t)

    def remove(self, ids: list[str]) -> list[int]:
        removed: list[int] = []
        for s, pos in enumerate(split(ids, len(self.parts))):
            if pos:
                keys = self.parts[s].remove([ids[p] for p in pos])
                pf = self.prefilters[s]
                if pf is not None and keys:
                    pf.remove(np.asarray(keys, dtype=np.int64))
                removed.extend(keys)
        self._changed()
        return sorted(removed)

    def compact(self) -> None:
        for bank in self.parts:
            bank.compact()
        self._changed()

    def bulk_loader(self) -> Any:
        if self.count:
            raise RuntimeError("bulk_loader needs an empty bank")
        return ShardedLoader(self)

    # ---- the global view (key order) --------------------------------------------------------
    def _view(self) -> _Order:
        order = self._order
        if order is None:
            with self._order_lock:
                order = self._order
                if order is None:
                    order = self._order = _Order(self.parts)
        return order

    @property
    def _ids(self) -> list[str | None]:  # type: ignore[override]
        return self._view().ids()  # type: ignore[return-value]

    @property
    def _payloads(self) -> list[dict[str, Any] | None]:  # type: ignore[override]
        return self._view().payloads()

    @property
    def _row_of(self) -> dict[str, int]:  # type: ignore[override]
        return self._view().row_of()

    @property
    def _n(self) -> int:  # type: ignore[override]
        return len(self._view().keys)

    _dead = 0
    _max_norm = None

    @property
    def keys(self) -> np.ndarray:
        return self._view().keys

    @property
    def bias(self) -> torch.Tensor | None:
        """(N,) float32 log-priors of the global view (no tombstones there); None: all s = 1."""
        if not self.has_prior:
            return None
        view = self._view()
        if view.bias is None:
            lp = self.priors.log_prior[: len(view.keys)]
            view.bias = torch.from_numpy(lp).to(self.device, torch.float32)
        return view.bias

    def key_log_prior(self, keys: torch.Tensor) -> torch.Tensor:
        """The log-prior (float32 bias) of global keys (B, k), 0 for −1 (shards/ops.py ranks
        the union of the shards' top-k by weight with it)."""
        bias = self.bias
        b = torch.zeros(1) if bias is None else bias.cpu()
        rows = torch.from_numpy(self.rows_for_keys(keys.numpy()))
        return torch.where(rows >= 0, b[rows.clamp_min(0)], 0.0)

    @property
    def xi(self) -> torch.Tensor:
        return self.alive_xi()

    def alive_rows(self) -> np.ndarray:
        return np.arange(self.count, dtype=np.int64)

    def alive_xi(self) -> torch.Tensor:
        """All memories in key order: a gathered copy (see the module docstring)."""
        view = self._view()
        out = torch.empty(len(view.keys), self._config.dim, dtype=self.dtype, device=self.device)
        for s, bank in enumerate(self.parts):
            mine = np.flatnonzero(view.shard == s)
            if len(mine):
                src = torch.from_numpy(view.row[mine]).to(self.device)
                out[torch.from_numpy(mine).to(self.device)] = bank.xi.index_select(0, src)
        return out

    @property
    def priors(self) -> RowPriors:  # type: ignore[override]
        """The shards' priors gathered over the global view (read-only: writes go through
        `_set_priors`, `set_half_life`)."""
        view = self._view()
        if view.priors is None:
            view.priors = gathered([b.priors for b in self.parts], view.shard, view.row)
        return view.priors

    def expired_rows(self, t: float) -> np.ndarray:
        """Rows of the global view whose lifetime has ended at t (none before `next_expiry`)."""
        if t < self.next_expiry:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.priors.expires_at[: self._n] <= t)

    def max_norm(self) -> float:
        return max((b.max_norm() for b in self.parts if b.count), default=0.0)

    def id_at(self, row: int) -> str:
        return self._view().ids()[row]

    def payload_at(self, row: int) -> dict[str, Any] | None:
        view = self._view()
        return self.parts[int(view.shard[row])].payload_at(int(view.row[row]))

    def vector_at(self, row: int) -> np.ndarray:
        view = self._view()
        return self.parts[int(view.shard[row])].vector_at(int(view.row[row]))

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        live = self.keys
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.searchsorted(live, keys)
        pos_c = np.clip(pos, 0, max(0, len(live) - 1))
        ok = (keys >= 0) & (pos < len(live))
        if len(live):
            ok &= live[pos_c] == keys
        return np.where(ok, pos_c, -1)

    def get(self, memory_id: str) -> tuple[np.ndarray, dict[str, Any] | None]:
        return self.parts[shard_of(memory_id, len(self.parts))].get(memory_id)
