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
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from .bank import PreparedBatch
from .config import BankConfig, PrefilterConfig, validate_bank_name
from .errors import (
    BankExistsError,
    BankNotFoundError,
    InvalidParameterError,
    MemoryNotFoundError,
)
from .payload_index import validate_index_spec
from .persist import INDEX_DIR, STORE_FILE, StoredTable
from .results import (
    BankInfo,
    UpsertResult,
)
from .selection import delete_filter, passing_ids, rebuild_indexes
from .slot import BankSlot, empty_index, fill_index, now
from .store import snapshot as snapshot_io

__all__ = ["INDEX_DIR", "STORE_FILE", "Engine"]

log = logging.getLogger("lam.engine")


class Engine(StoredTable):
    """The one object the service holds: banks by name, durable and thread-safe.

    Reads come from `BankTable`, the store and the lifecycle from `StoredTable`; this class
    owns the writes.
    """

    # ---- banks ----------------------------------------------------------------------------
    def create_bank(self, name: str, config: BankConfig) -> tuple[BankInfo, bool]:
        validate_bank_name(name)
        config = config.validate()
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
    ) -> BankInfo:
        slot = self._slot(name)
        with slot.writer:
            if self._banks.get(name) is not slot:  # deleted or replaced meanwhile
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            changes: dict[str, Any] = {}
            if beta is not None:
                changes["beta"] = beta
            if prefilter is not None:
                if slot.config.model != "B" and prefilter.kind != "none":
                    raise InvalidParameterError("a prefilter applies to Model B banks only")
                changes["prefilter"] = prefilter.validate()
            if payload_index is not None:
                changes["payload_index"] = validate_index_spec(payload_index)
            config = slot.config.with_changes(**changes)
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
                slot.bank.config = config
                slot.prefilter = index
                if reindex:
                    rebuild_indexes(slot.bank)
                info = slot.info()
            self._committed(slot)
            if index is not slot_index_before:
                self._remove_index_files(name)  # built for the old config: never loadable again
            return info

    # ---- memories -------------------------------------------------------------------------
    def upsert(
        self,
        name: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
    ) -> UpsertResult:
        slot = self._slot(name)
        batch = slot.bank.prepare(vectors, ids, payloads)
        with slot.writer:
            if self._banks.get(name) is not slot:
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            # The bank mirrors the store (same ids), so it tells which ids are replacements.
            ids = batch.unique_ids
            any_replaced = slot.bank.holds_any(ids)
            replaced = [i in slot.bank for i in ids] if any_replaced else [False] * len(ids)
            seqs = self.storage.upsert(
                name, ids, batch.vectors, batch.payloads, all_new=not any_replaced
            )
            with slot.lock.write():
                self._apply(slot, batch, seqs, replaced)
                count = slot.bank.count
            self._committed(slot)
        return UpsertResult(ids=batch.ids, count=count)

    def _apply(
        self, slot: BankSlot, batch: PreparedBatch, seqs: list[int], replaced: list[bool]
    ) -> None:
        try:
            slot.bank.apply(batch, seqs)
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
            deleted = self.storage.delete(name, present)
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
    ) -> BankInfo:
        """Restore a snapshot into bank `name`; `max_bytes` bounds the unpacked archive."""
        validate_bank_name(name)
        snap = snapshot_io.read_snapshot(fileobj, max_bytes=max_bytes)
        config = BankConfig.from_dict(snap.config)
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
                    )
                if old is not None:
                    self._remove_index_files(name)  # the replaced bank's: stale from now on
                if batch.unique_ids:
                    slot.bank.apply(batch, seqs)
                slot.rebuild_index()
                self._committed(slot)
                self._banks[name] = slot
            return slot.info()
