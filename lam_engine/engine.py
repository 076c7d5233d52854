"""Engine: named memory banks on a device, backed by the durable store.

Write path (one writer per bank): validate and prepare the batch (pure) → commit it to
SQLite in one transaction → apply it to the in-memory bank and its index under the bank's
write lock. A failed commit leaves both unchanged; readers (queries) hold the read lock,
so they see the bank before or after a batch, never half of it.

Lifecycle (open, load, saved prefilter indexes, close): persist.py (`StoredTable`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from . import stager
from .bank import PreparedBatch
from .bulk import Staged
from .config import BankConfig, PrefilterConfig, validate_bank_name
from .errors import (
    BankExistsError,
    BankNotFoundError,
    InvalidParameterError,
    MemoryNotFoundError,
)
from .fading import reinforce, snapshot_times
from .forgetting import check_strength, resolve_batch
from .gcpause import gc_paused
from .novelty import gate
from .payload_index import validate_index_spec
from .persist import INDEX_DIR, STORE_FILE, StoredTable
from .reaper import Reaper
from .results import BankInfo, UpsertResult
from .selection import delete_filter, passing_ids, rebuild_indexes
from .slot import BankSlot, empty_index, fill_index, now
from .store import snapshot as snapshot_io
from .store.rows import row_times
from .texts import apply_texts, batch_texts, check_embedder

__all__ = ["INDEX_DIR", "STORE_FILE", "UNSET", "Engine", "patched"]
UNSET: Any = object()  # update_bank: a field not given (None clears it)

log = logging.getLogger("lam.engine")


def patched(
    config: BankConfig,
    *,
    beta: float | None = None,
    prefilter: PrefilterConfig | None = None,
    payload_index: dict[str, str] | None = None,
    default_ttl_s: Any = UNSET,
    half_life_s: Any = UNSET,
) -> BankConfig:
    """The config PATCH makes of `config` (API.md: beta, prefilter, payload_index and the
    forgetting fields; None / UNSET keep a field, except that None clears the forgetting
    ones), validated. One source for the engine and the cluster router."""
    changes: dict[str, Any] = {}
    if beta is not None:
        changes["beta"] = beta
    if prefilter is not None:
        if config.model != "B" and prefilter.kind != "none":
            raise InvalidParameterError("a prefilter applies to Model B banks only")
        changes["prefilter"] = prefilter.validate()
    if payload_index is not None:
        changes["payload_index"] = validate_index_spec(payload_index)
    for key, value in (("default_ttl_s", default_ttl_s), ("half_life_s", half_life_s)):
        if value is not UNSET:
            changes[key] = value
    return config.with_changes(**changes)


class Engine(StoredTable):
    """The one object the service holds: banks by name, durable and thread-safe.

    Reads come from `BankTable`, the store and the lifecycle from `StoredTable`; this class
    owns the writes.
    """

    _reaper: Reaper | None = None

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.stop()
        super().close()

    # ---- banks ----------------------------------------------------------------------------
    def create_bank(
        self, name: str, config: BankConfig, *, load_embedder: bool = True
    ) -> tuple[BankInfo, bool]:
        """`load_embedder=False`: a text bank whose texts are embedded elsewhere (a cluster
        replica keeps the texts its router embedded), so its model is never loaded here."""
        validate_bank_name(name)
        config = config.validate()
        if load_embedder:
            check_embedder(config)  # a text bank's model loads (seconds, once): outside the lock
        with self._table:
            existing = self._banks.get(name)
            if existing is not None:
                if existing.config == config:
                    return existing.info(), False
                raise BankExistsError(
                    f"bank {name!r} exists with a different config", {"bank": name}
                )
            created_at = now()
            slot = self._new_slot(name, config, created_at, on_load=False)
            self.storage.create_bank(name, config.to_dict(), created_at)
            self._committed(slot)
            self._banks[name] = slot
            return slot.info(), True

    def delete_bank(self, name: str) -> None:
        with self._table:
            slot = self._slot(name)
            with slot.writer, slot.lock.write():
                self.storage.delete_bank(name)
                del self._banks[name]
            self._remove_index_files(name)

    def update_bank(
        self,
        name: str,
        *,
        beta: float | None = None,
        prefilter: PrefilterConfig | None = None,
        payload_index: dict[str, str] | None = None,
        default_ttl_s: Any = UNSET,
        half_life_s: Any = UNSET,
    ) -> BankInfo:
        """Change a bank's config; `default_ttl_s` / `half_life_s` left UNSET are kept, None
        clears them. A new half-life applies to every memory from its t_μ (fading.py)."""
        slot = self._slot(name)
        with slot.writer:
            if self._banks.get(name) is not slot:  # deleted or replaced meanwhile
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            config = patched(
                slot.config, beta=beta, prefilter=prefilter, payload_index=payload_index,
                default_ttl_s=default_ttl_s, half_life_s=half_life_s,
            )  # fmt: skip
            if config == slot.config:
                return self.bank_info(name)
            self.storage.update_bank_config(name, config.to_dict())
            index = slot_index_before = slot.prefilter
            if config.prefilter != slot.config.prefilter:
                index = empty_index(config, config.prefilter)
                if index is not None:
                    fill_index(index, slot.bank)
            with slot.lock.write():
                reindex = config.payload_index != slot.bank.config.payload_index
                new_half_life = config.half_life_s != slot.bank.config.half_life_s
                slot.bank.config = config
                slot.prefilter = index
                if reindex:
                    rebuild_indexes(slot.bank)
                if new_half_life:
                    slot.bank.set_half_life(config.half_life_s)
                info = slot.info()
            self._committed(slot)
            if index is not slot_index_before:
                self._remove_index_files(name)  # built for the old config: never loadable again
            return info

    # ---- memories -------------------------------------------------------------------------
    @gc_paused()  # a few fresh objects per row: see gcpause.py
    def upsert(
        self,
        name: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        *,
        strengths: Sequence[Any] | None = None,
        ttl_s: Sequence[Any] | None = None,
        expires_at: Sequence[Any] | None = None,
        if_novel: float | None = None,  # τ: store only memories with E(ξ) > τ (novelty.py)
        texts: Sequence[str | None] | None = None,  # a text bank's, one per vector (texts.py)
    ) -> UpsertResult:
        """Store a batch; `strengths`, `ttl_s`, `expires_at`: one entry (or None) per vector
        (API.md "Forgetting"; forgetting.py validates them)."""
        slot = self._slot(name)
        now = self.clock.now()
        s = exp = None
        if not (strengths is None and ttl_s is None and expires_at is None) or (
            slot.config.default_ttl_s is not None
        ):
            # Rows as given (prepare refuses a malformed batch right after, typed).
            n = len(ids) if ids is not None else len(vectors) if hasattr(vectors, "__len__") else 0
            s, exp = resolve_batch(
                n, strengths, ttl_s, expires_at, default_ttl_s=slot.config.default_ttl_s, now=now
            )
        batch = slot.bank.prepare(vectors, ids, payloads, strengths=s, expires=exp, stored_at=now)
        with slot.writer:
            if self._banks.get(name) is not slot:
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            kept = batch_texts(slot.bank, batch, texts)  # per unique id of the whole batch
            gated, skipped = gate(slot, batch, payloads, if_novel, self.chunk_bytes)
            if not gated.ids:  # everything skipped: no write, the generation unchanged
                return UpsertResult(ids=[], count=slot.bank.count, skipped=skipped)
            if kept is not None and gated is not batch:
                by_id = dict(zip(batch.unique_ids, kept, strict=True))
                kept = [by_id[i] for i in gated.unique_ids]
            batch = gated
            # The bank mirrors the store (same ids), so it tells which ids are replacements.
            ids = batch.unique_ids
            any_replaced = slot.bank.holds_any(ids)
            replaced = [i in slot.bank for i in ids] if any_replaced else [False] * len(ids)
            stored = slot.bank.seqs_of([i for i, r in zip(ids, replaced, strict=True) if r])
            times = row_times(len(ids), batch.strengths, now, None, batch.expires)
            staging = None if any_replaced else stager.start(slot.bank, batch.vectors)
            try:
                seqs = self.storage.upsert(
                    name, ids, batch.vectors, batch.payloads, stored=stored, times=times,
                    memory_texts=kept,
                )  # fmt: skip
            finally:
                staged = stager.finish(staging)  # the bank's tail is this writer's again
            with slot.lock.write():
                self._apply(slot, batch, seqs, replaced, staged)
                apply_texts(slot.bank, ids, kept)
                count = slot.bank.count
            self._committed(slot)
        if batch.expires is not None and self._reaper is not None:
            self._reaper.wake()
        return UpsertResult(ids=batch.ids, count=count, skipped=skipped)

    def reinforce(self, name: str, ids: list[str], strength: float | None = None) -> int:
        """t_μ = now (and s_μ = strength when given) for the ids the bank holds and that have
        not expired; returns how many (unknown ids are not counted, as in delete)."""
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidParameterError("ids must be a list of strings")
        s = None if strength is None else check_strength(strength)
        slot = self._slot(name)
        with slot.writer:
            if self._banks.get(name) is not slot:
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            now, bank = self.clock.now(), slot.bank
            present = [
                i for i in dict.fromkeys(ids) if i in bank and bank.forgetting(i, now) is not None
            ]  # fmt: skip
            if not present:
                return 0
            n = self.storage.reinforce(name, present, now, s, bank.seqs_of(present))
            with slot.lock.write():
                rows = np.asarray([bank._row_of[i] for i in present], dtype=np.int64)
                reinforce(bank, rows, now, s)
            self._committed(slot)
            return n

    def reap(self) -> float:
        """Delete every memory expired by now through the durable delete path; returns the
        next expiry of any bank (unix s; inf: none). The reaper thread calls it."""
        next_at = math.inf
        for name in self.bank_names():
            slot = self._banks.get(name)
            if slot is None:
                continue
            bank = slot.bank
            with slot.lock.read():
                rows = bank.expired_rows(self.clock.now())
                ids = [bank.id_at(int(r)) for r in rows]
            if ids:
                self.delete_memories(name, ids)
            next_at = min(next_at, bank.next_expiry)
        return next_at

    def start_background(self) -> None:
        if self._reaper is None and not self.storage.read_only:
            self._reaper = Reaper(self.reap, self.clock.now)

    def _apply(
        self,
        slot: BankSlot,
        batch: PreparedBatch,
        seqs: list[int],
        replaced: list[bool],
        staged: Staged | None = None,
    ) -> None:
        try:
            slot.bank.apply(batch, seqs, staged)
            if slot.prefilter is not None:
                keys = np.asarray(seqs, dtype=np.int64)
                if any(replaced):
                    slot.prefilter.remove(keys[np.asarray(replaced, dtype=bool)])
                slot.prefilter.add(keys, batch.vectors)
        except BaseException:
            # The batch is committed: rebuild this bank from the store so memory matches disk.
            slot.generation = None
            self._reload(slot)
            raise

    def _reload(self, slot: BankSlot) -> None:
        fresh = self._new_slot(slot.name, slot.config, slot.created_at, on_load=True)
        generation = self._fill_from_store(fresh.bank, slot.name)
        fresh.rebuild_index()
        slot.bank, slot.prefilter = fresh.bank, fresh.prefilter
        slot.generation = generation

    def delete_memory(self, name: str, memory_id: str) -> None:
        if self.delete_memories(name, [memory_id]) == 0:
            raise MemoryNotFoundError(f"memory {memory_id!r} not found", {"id": memory_id})

    def delete_memories(
        self, name: str, ids: list[str] | None = None, *, filter: Any = None
    ) -> int:
        """Delete the memories of `ids`, or those passing `filter` (exactly one of the two)."""
        slot = self._slot(name)
        flt = delete_filter(ids, filter)
        with slot.writer:
            if self._banks.get(name) is not slot:  # deleted or replaced meanwhile
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            if flt is not None:  # under the writer lock: no write changes what passes meanwhile
                with slot.lock.read():
                    ids = passing_ids(slot.bank, flt)
            present = [i for i in dict.fromkeys(ids or ()) if i in slot.bank]
            if not present:
                return 0
            deleted = self.storage.delete(name, present, slot.bank.seqs_of(present))
            with slot.lock.write():
                keys = slot.bank.remove(present)
                if slot.prefilter is not None and keys:
                    slot.prefilter.remove(np.asarray(keys, dtype=np.int64))
            self._committed(slot)
            return deleted

    # ---- snapshots ------------------------------------------------------------------------
    def import_snapshot(
        self,
        name: str,
        fileobj: BinaryIO,
        *,
        replace: bool = False,
        max_bytes: int | None = None,
        shards: int | None = None,
    ) -> BankInfo:
        """Restore a snapshot into bank `name` (over `shards` shards: any count; None: the
        snapshot's); `max_bytes` bounds the unpacked archive. A cluster bank's file (its
        `replicas` > 1) is restored with one replica: replicas are a cluster's placement, as
        shards are, and one process has none."""
        validate_bank_name(name)
        snap = snapshot_io.read_snapshot(fileobj, max_bytes=max_bytes)
        config = BankConfig.from_dict(snap.config)
        config = config if shards is None else config.with_changes(shards=shards)
        config = config if config.replicas == 1 else config.with_changes(replicas=1)
        with self._table:
            old = self._banks.get(name)
            if old is not None and not replace:
                raise BankExistsError(f"bank {name!r} exists (use replace=true)", {"bank": name})
            slot = self._new_slot(name, config, snap.created_at, on_load=False)
            batch = (
                slot.bank.prepare(snap.vectors, list(snap.ids), list(snap.payloads), as_stored=True)
                if snap.ids
                else PreparedBatch([], [], np.zeros((0, config.dim), np.float32), [])
            )
            times = snapshot_times(snap.times, len(batch.unique_ids), self.clock.now())
            # Writers of a replaced bank wait until the new one is in place, then find their
            # slot stale: none of them can write to the new bank as if it were the old one.
            with old.writer if old is not None else contextlib.nullcontext():
                with old.lock.write() if old is not None else contextlib.nullcontext():
                    seqs = self.storage.replace_bank(
                        name,
                        config.to_dict(),
                        snap.created_at,
                        batch.unique_ids,
                        batch.vectors,
                        batch.payloads,
                        row_times(len(batch.unique_ids), *times),
                        memory_texts=snap.texts,
                    )
                if old is not None:
                    self._remove_index_files(name)  # the replaced bank's: stale from now on
                if batch.unique_ids:
                    slot.bank.apply(batch, seqs)
                    slot.bank._set_priors(np.arange(len(seqs)), *times)
                    apply_texts(slot.bank, batch.unique_ids, snap.texts)
                slot.rebuild_index()
                self._committed(slot)
                self._banks[name] = slot
            return slot.info()
