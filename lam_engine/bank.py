"""MemoryBank: the memories ξ of one bank as a device tensor, with ids, payloads and keys.

Rows are kept in insertion order (the order of the store's `seq` keys). Appends grow the
tensor geometrically (amortized O(1) per row, no full copy per insert). Deletes leave a
tombstone (a -inf bias hides the row from every softmax) and the bank compacts itself, in
order, once tombstones exceed a quarter of the rows: no full rebuild per delete.
Strengths and lifetimes: priors.py (arrays), fading.py (reinforce, half-life). Not
thread-safe by itself: the Engine holds a reader/writer lock around each bank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import arena
from .batch import PreparedBatch, prepare_batch
from .bulk import BulkLoader, Staged
from .clock import SYSTEM_CLOCK, Clock
from .config import BankConfig
from .errors import MemoryNotFoundError
from .payload_index import PayloadIndexes
from .priors import RowPriors
from .vectors import TORCH_DTYPES

_MIN_CAPACITY = 64
_COMPACT_FRACTION = 0.25


class MemoryBank:
    """Memories of one bank on a device (see module docstring)."""

    stages_appends = True  # `stage` can copy an append ahead of its commit (stager.py)
    _arena: arena.RowArena | None = None  # where a CPU bank's rows grow without a copy

    def __init__(
        self, config: BankConfig, device: torch.device, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.config = config
        self.clock = clock
        self.device = device
        self.dtype = TORCH_DTYPES[config.dtype]
        self._xi = torch.zeros(_MIN_CAPACITY, config.dim, dtype=self.dtype, device=device)
        self._bias = torch.zeros(_MIN_CAPACITY, dtype=torch.float32, device=device)
        self._keys = np.zeros(_MIN_CAPACITY, dtype=np.int64)  # store seq per row, ascending
        self._ids: list[str | None] = []
        self._payloads: list[dict[str, Any] | None] = []
        self._row_of: dict[str, int] = {}
        self._n = 0  # rows in use, tombstones included
        self._dead = 0
        self._max_norm: float | None = None
        # Payload indexes kept row for row with the bank (filters read them: selection.py).
        self.indexes = PayloadIndexes(config.payload_index)
        self.texts: dict[str, str] = {}  # id → text, for memories stored as text (texts.py)
        # Strengths and lifetimes row for row (priors.py); log-priors go into _bias.
        self.priors = RowPriors(_MIN_CAPACITY, config.half_life_s)

    # ---- size -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._n - self._dead

    @property
    def memory_bytes(self) -> int:
        xi_bytes = self._xi.numel() * self._xi.element_size()
        return int(xi_bytes + self._bias.numel() * 4 + self._keys.nbytes)

    def __contains__(self, memory_id: str) -> bool:
        return memory_id in self._row_of

    def holds_any(self, memory_ids: Sequence[str]) -> bool:
        """Whether any of the ids is stored: one C-level set test, not a Python loop."""
        return not self._row_of.keys().isdisjoint(memory_ids)

    def seqs_of(self, memory_ids: Sequence[str]) -> dict[str, int]:
        """id → store seq of ids the bank holds: the store finds rows by it (no id index)."""
        return {i: int(self._keys[self._row_of[i]]) for i in memory_ids}

    # ---- writes -----------------------------------------------------------------------
    def prepare(
        self,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        *,
        as_stored: bool = False,
        strengths: np.ndarray | None = None,
        expires: np.ndarray | None = None,
        stored_at: float = 0.0,
    ) -> PreparedBatch:
        """Validate a batch and compute what will be stored; changes nothing.

        `as_stored` skips normalization (snapshot import: the vectors are already stored form).
        `strengths` and `expires` (per input row, validated: forgetting.py) follow the rows.
        """
        return prepare_batch(
            self.config, vectors, ids, payloads, as_stored=as_stored, strengths=strengths,
            expires=expires, stored_at=stored_at,
        )  # fmt: skip

    def stage(self, vectors: np.ndarray) -> Staged:
        """Copy an all-new batch past the last row, unseen by readers (stager.py); the caller
        holds `writer` only: a grown tensor holds the same first `_n` rows as the old."""
        start, stop = self._n, self._n + len(vectors)
        self._reserve(stop)
        self._xi[start:stop].copy_(torch.from_numpy(vectors))
        return Staged(self._xi, start, stop)

    def apply(
        self, batch: PreparedBatch, keys: list[int] | np.ndarray, staged: Staged | None = None
    ) -> None:
        """Apply a prepared batch whose keys (store seqs) are known; replaces keep their row."""
        row_of = self._row_of
        m = len(batch.unique_ids)
        # The usual bulk case, all ids new, is told by one C-level set test: no row lookups.
        all_new = not self.holds_any(batch.unique_ids)
        new_rows: Sequence[int] = range(m)
        if not (all_new and staged is not None and staged.follows(self._xi, self._n, m)):
            staged = None  # not (or no longer) this batch's rows past the last one
            vec = torch.from_numpy(batch.vectors).to(device=self.device, dtype=self.dtype)
        if not all_new:  # some ids replaced: they keep their rows
            rows = [row_of.get(mid) for mid in batch.unique_ids]
            new_rows = [j for j, r in enumerate(rows) if r is None]
            replace_src = [j for j, row in enumerate(rows) if row is not None]
            replace_rows = [rows[j] for j in replace_src]
            self._xi[replace_rows] = vec[replace_src]
            for j, row in zip(replace_src, replace_rows, strict=True):
                self._payloads[row] = batch.payloads[j]  # type: ignore[index]
            self.indexes.add(
                np.asarray(replace_rows, dtype=np.int64), [batch.payloads[j] for j in replace_src]
            )
        if new_rows:
            start = self._n
            stop = start + len(new_rows)
            if staged is None:
                self._reserve(stop)
                self._xi[start:stop] = vec if all_new else vec[new_rows]
            self._bias[start:stop] = 0.0
            keys = np.asarray(keys, dtype=np.int64)
            self._keys[start:stop] = keys if all_new else keys[new_rows]
            new_ids = batch.unique_ids if all_new else [batch.unique_ids[j] for j in new_rows]
            self._ids.extend(new_ids)
            self._payloads.extend(
                batch.payloads if all_new else [batch.payloads[j] for j in new_rows]
            )
            row_of.update(zip(new_ids, range(start, stop), strict=True))
            self.indexes.add(np.arange(start, stop), self._payloads[start:stop])
            self._n = stop
        self._max_norm = None
        if all_new:
            all_rows = np.arange(self._n - m, self._n, dtype=np.int64)
        else:
            all_rows = np.asarray([row_of[mid] for mid in batch.unique_ids], dtype=np.int64)
        self._set_priors(
            all_rows,
            np.ones(m) if batch.strengths is None else batch.strengths,
            np.full(m, batch.stored_at),
            np.full(m, np.nan),
            np.full(m, np.inf) if batch.expires is None else batch.expires,
        )

    def _set_priors(self, rows: np.ndarray, strength: np.ndarray, stored_at: np.ndarray,
                    reinforced_at: np.ndarray, expires: np.ndarray) -> None:  # fmt: skip
        """Record rows' strengths and times, and bring their log-prior bias up to date."""
        pr = self.priors
        full = pr.set_rows(rows, strength, stored_at, reinforced_at, expires)
        if not pr.active:
            return
        if full:
            pr.refresh(self._n)
            self._rebias()
        elif len(rows):
            idx = torch.from_numpy(rows).to(self.device)
            lp_rows = torch.from_numpy(pr.log_prior[rows]).to(self.device, torch.float32)
            self._bias[idx] = lp_rows

    def _rebias(self) -> None:
        """Every row's bias from its log-prior (after a rebase or a new half-life)."""
        lp = torch.from_numpy(self.priors.log_prior[: self._n]).to(self.device, torch.float32)
        cur = self._bias[: self._n]
        self._bias[: self._n] = torch.where(torch.isneginf(cur), cur, lp if self.has_prior else 0)

    def set_half_life(self, half_life_s: float | None) -> None:
        """A new half-life: strengths then fade by it from t_μ (API.md; docs/forgetting.md)."""
        self.priors.set_half_life(half_life_s, self._n, self.clock.now())
        self._rebias()

    def bulk_loader(self) -> BulkLoader:
        """The `Storage.load` sink that fills this (empty) bank (bulk.py)."""
        if self._n:
            raise RuntimeError("bulk_loader needs an empty bank")
        return BulkLoader(self)

    def remove(self, ids: list[str]) -> list[int]:
        """Tombstone the rows of `ids` that exist; returns their keys."""
        rows = sorted({self._row_of[i] for i in ids if i in self._row_of})
        if not rows:
            return []
        removed = self._keys[rows].tolist()
        self._bias[rows] = -math.inf
        self._xi[rows] = 0
        for r in rows:
            del self._row_of[self._ids[r]]  # type: ignore[arg-type]
            self.texts.pop(self._ids[r], None)  # type: ignore[arg-type]
            self._ids[r] = None
            self._payloads[r] = None
        self._dead += len(rows)
        self._max_norm = None
        self.priors.clear(rows, self._n)
        self.indexes.remove(rows)
        if self._dead > _COMPACT_FRACTION * self._n:
            self.compact()
        return removed

    def compact(self) -> None:
        """Drop tombstones, keeping insertion order."""
        if self._dead == 0:
            return
        alive = [r for r in range(self._n) if self._ids[r] is not None]
        idx = torch.tensor(alive, dtype=torch.long, device=self.device)
        n = len(alive)
        capacity = max(_MIN_CAPACITY, n)
        xi = torch.zeros(capacity, self.config.dim, dtype=self.dtype, device=self.device)
        xi[:n] = self._xi.index_select(0, idx)
        keys = np.zeros(capacity, dtype=np.int64)
        keys[:n] = self._keys[alive]
        self._xi, self._keys = xi, keys
        self._bias = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.priors.remap(np.asarray(alive, dtype=np.int64), capacity)
        if self.priors.active:
            self._bias[:n] = torch.from_numpy(self.priors.log_prior[:n]).to(self.device)
        self._ids = [self._ids[r] for r in alive]
        self._payloads = [self._payloads[r] for r in alive]
        self._row_of = {mid: r for r, mid in enumerate(self._ids)}  # type: ignore[misc]
        self.indexes.remap(np.asarray(alive, dtype=np.int64))
        self._n, self._dead = n, 0

    def _reserve(self, rows: int, *, exact: bool = False) -> None:
        cap = self._xi.shape[0]
        if rows <= cap:
            return
        # A CPU tensor's untouched pages take no memory: it doubles (a device's: ×1.5).
        grow = 2.0 if self.device.type == "cpu" else 1.5
        new_cap = rows if exact else max(rows, int(cap * grow) + 1)
        if self.device.type == "cpu":  # a longer view of its reserved mapping (arena.py)
            xi, self._arena = arena.grow(self._xi, self._n, new_cap, self._arena)
        else:  # rows beyond _n are never read: no need to zero them
            xi = torch.empty(new_cap, self.config.dim, dtype=self.dtype, device=self.device)
            xi[: self._n] = self._xi[: self._n]
        bias = torch.zeros(new_cap, dtype=torch.float32, device=self.device)
        bias[: self._n] = self._bias[: self._n]
        keys = np.zeros(new_cap, dtype=np.int64)
        keys[: self._n] = self._keys[: self._n]
        self._xi, self._bias, self._keys = xi, bias, keys
        self.priors.reserve(new_cap, self._n)

    # ---- reads ------------------------------------------------------------------------
    @property
    def xi(self) -> torch.Tensor:
        """Rows in use (tombstones are zero rows): (n_rows, d)."""
        return self._xi[: self._n]

    @property
    def bias(self) -> torch.Tensor | None:
        """(n_rows,) float32 log-prior of each row (math/strengths.py), -inf for tombstones;
        None when there are no tombstones and every strength is 1 without decay (fast path:
        today's Model B, bit for bit)."""
        return self._bias[: self._n] if self._dead or self.priors.active else None

    @property
    def has_prior(self) -> bool:  # strengths other than 1, or a half-life
        return self.priors.active

    def bias_offset(self) -> float:  # the log-priors' common part now: in E, not in p
        return self.priors.offset(self.clock.now())

    def alive_bias(self) -> torch.Tensor | None:
        """(count,) float64 log s_μ(now) of the alive memories in order (None: all s = 1)."""
        if not self.priors.active:
            return None
        lp = self.priors.log_prior[self.alive_rows()] + self.bias_offset()
        return torch.from_numpy(lp).to(self.device)

    def log_mass(self) -> float:
        """log Σ_μ s_μ(now) over the memories (log N when all s_μ = 1): E's constant."""
        if not self.priors.active:
            return math.log(self.count)
        return self.priors.log_mass(self.alive_rows) + self.bias_offset()

    @property
    def next_expiry(self) -> float:  # the earliest expires_at of a memory (a lower bound)
        return self.priors.next_expiry

    def forgetting(self, memory_id: str, t: float) -> dict[str, Any] | None:
        """The memory's forgetting fields at t (priors.py); None once it has expired."""
        row = self._row_of[memory_id]
        return None if self.priors.expires_at[row] <= t else self.priors.fields(row, t)

    def search_index(self, prefilter: Any) -> Any:
        """The candidate index diagnostics searches: the bank's prefilter (None: none)."""
        return prefilter

    def index_info(self, prefilter: Any) -> dict[str, Any]:
        """The description's "index" with the bank's prefilter (None: no index)."""
        return {"kind": "none"} if prefilter is None else prefilter.describe()

    def expired_rows(self, t: float) -> np.ndarray:
        """Rows in use whose lifetime has ended at time t (none before `next_expiry`)."""
        if t < self.priors.next_expiry:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.priors.expires_at[: self._n] <= t)

    @property
    def keys(self) -> np.ndarray:
        return self._keys[: self._n]

    def alive_rows(self) -> np.ndarray:
        if not self._dead:  # no tombstones: every row in use
            return np.arange(self._n, dtype=np.int64)
        return np.asarray([r for r in range(self._n) if self._ids[r] is not None], dtype=np.int64)

    def alive_xi(self) -> torch.Tensor:
        """(count, d) alive memories in insertion order (a copy only if tombstones exist)."""
        if not self._dead:
            return self.xi
        idx = torch.from_numpy(self.alive_rows()).to(self.device)
        return self._xi.index_select(0, idx)

    def alive_vectors(self) -> np.ndarray:
        """(count, d) float32 C-contiguous copy of the alive memories, in insertion order:
        what indexes are built from and snapshots write (one copy, whatever the dtype)."""
        xi = self.alive_xi().to(device="cpu", dtype=torch.float32, copy=True)
        return np.ascontiguousarray(xi.numpy())

    def max_norm(self) -> float:
        """M = max_μ ‖ξ_μ‖ (cached until the next write)."""
        if self._max_norm is None:
            xi = self.xi
            self._max_norm = float(xi.float().norm(dim=1).max()) if len(xi) else 0.0
        return self._max_norm

    def id_at(self, row: int) -> str:
        mid = self._ids[row]
        assert mid is not None
        return mid

    def payload_at(self, row: int) -> dict[str, Any] | None:
        return self._payloads[row]

    def vector_at(self, row: int) -> np.ndarray:
        return self._xi[row].float().cpu().numpy().copy()

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        """Rows of the given keys, -1 for keys that are gone (e.g. stale index entries)."""
        live_keys = self.keys
        n = len(live_keys)
        if n and int(live_keys[-1]) - int(live_keys[0]) == n - 1:
            # No gaps (keys ascend, so they are k0, k0 + 1, …): a key's row is key − k0. The
            # binary search below costs ≈ 0.3 ms for a query's 256 candidates in a 10⁵-row
            # bank, its probes missing a cache that the index scan has just filled.
            pos = keys - live_keys[0]
            rows = np.where((pos >= 0) & (pos < n), pos, -1)
        else:
            pos = np.searchsorted(live_keys, keys)
            pos_c = np.clip(pos, 0, max(0, n - 1))
            ok = (keys >= 0) & (pos < n)
            if n:
                ok &= live_keys[pos_c] == keys
            rows = np.where(ok, pos_c, -1)
        if self._dead:
            dead = [r >= 0 and self._ids[r] is None for r in rows.ravel()]
            rows = np.where(np.array(dead).reshape(rows.shape), -1, rows)
        return rows

    def get(self, memory_id: str) -> tuple[np.ndarray, dict[str, Any] | None]:
        row = self._row_of.get(memory_id)
        if row is None:
            raise MemoryNotFoundError(f"memory {memory_id!r} not found", {"id": memory_id})
        return self.vector_at(row), self._payloads[row]

    def scroll(self, limit: int, after_key: int | None) -> tuple[list[int], bool]:
        """Up to `limit` alive rows with key > after_key, and whether more follow."""
        start = 0 if after_key is None else int(np.searchsorted(self.keys, after_key, "right"))
        rows: list[int] = []
        for r in range(start, self._n):
            if self._ids[r] is None:
                continue
            if len(rows) == limit:
                return rows, True
            rows.append(r)
        return rows, False

    def snapshot_arrays(self) -> tuple[list[str], np.ndarray, list[dict[str, Any] | None]]:
        rows = self.alive_rows()
        vectors = self.alive_vectors()
        return [self.id_at(int(r)) for r in rows], vectors, [self._payloads[int(r)] for r in rows]
