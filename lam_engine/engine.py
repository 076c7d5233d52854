"""Engine: named memory banks on a device, backed by the durable store.

Write path (one writer per bank): validate and prepare the batch (pure) → commit it to
SQLite in one transaction → apply it to the in-memory bank and its index under the bank's
write lock. A failed commit leaves both unchanged; readers (queries) hold the read lock,
so they see the bank before or after a batch, never half of it.

Saved prefilter indexes: `close` saves every bank's trained FAISS index (IVF, HNSW) under
`<data dir>/index/`, tagged with the bank's store write generation, and `open` loads it
instead of rebuilding it when that generation (and the prefilter config) still match the
store; otherwise (a crash after writes, a damaged file) the index is rebuilt. Each slot
tracks the generation its in-memory bank and index reflect (None once unknown).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .bank import MemoryBank, PreparedBatch
from .config import BankConfig, PrefilterConfig, validate_bank_name
from .errors import (
    BankExistsError,
    BankNotFoundError,
    InvalidParameterError,
    LamError,
    MemoryNotFoundError,
)
from .index import IndexCatalog
from .kernels import DEFAULT_CHUNK_BYTES
from .novelty import gate
from .payload_index import validate_index_spec
from .results import BankInfo, UpsertResult
from .runtime import setup
from .selection import delete_filter, passing_ids, rebuild_indexes
from .slot import BankSlot, empty_index, fill_index, new_slot, now
from .store import DataDirLock, Storage
from .store import snapshot as snapshot_io
from .table import BankTable
from .texts import apply_texts, batch_texts, check_embedder

STORE_FILE = "lam.sqlite3"
INDEX_DIR = "index"  # saved prefilter indexes, beside the store

log = logging.getLogger("lam.engine")


class Engine(BankTable):
    """The one object the service holds: banks by name, durable and thread-safe.

    Reads come from `BankTable`; this class owns the store, the lifecycle and the writes.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        default_device: str = "auto",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        index_dir: Path | None = None,
    ) -> None:
        super().__init__(chunk_bytes=chunk_bytes)
        self.storage = storage
        self.default_device = default_device
        # Where prefilter indexes are saved; None: never (in-memory engines).
        self.index_dir = index_dir
        self._closed = False

    # ---- lifecycle ------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path | None,
        *,
        synchronous: str = "FULL",
        default_device: str = "auto",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> Engine:
        """Open (or create) the store under directory `path` and load every bank onto its device.

        `path=None` keeps everything in memory (tests, embedded scratch use).
        """
        index_dir = None
        if path is None:
            storage = Storage(":memory:", synchronous=synchronous)
        else:
            directory = Path(path)
            directory.mkdir(parents=True, exist_ok=True)
            # Taken before the store opens (which may migrate it): a held directory is left
            # untouched. The store releases it when it closes.
            lock = DataDirLock.acquire(directory)
            storage = Storage(directory / STORE_FILE, synchronous=synchronous, lock=lock)
            index_dir = directory / INDEX_DIR
        setup()  # process-wide settings the engine relies on (runtime.py), never at import
        engine = cls(
            storage, default_device=default_device, chunk_bytes=chunk_bytes, index_dir=index_dir
        )
        try:
            engine._load_all()
        except BaseException:
            storage.close()
            raise
        return engine

    def _load_all(self) -> None:
        for rec in self.storage.list_banks():
            config = BankConfig.from_dict(rec.config)
            slot = self._new_slot(rec.name, config, rec.created_at, on_load=True)
            slot.generation = self._fill_from_store(slot.bank, rec.name)
            if not self._load_index(slot):
                slot.rebuild_index()
                if slot.prefilter is not None:
                    slot.index_origin = "built"
                    # Save it now: a crash before the next clean shutdown costs no rebuild.
                    self._save_index(slot)
            self._banks[rec.name] = slot
        if self.index_dir is not None and not self.storage.read_only:
            keep = {
                name
                for name, slot in self._banks.items()
                if slot.prefilter is not None and slot.prefilter.worth_saving
            }
            IndexCatalog(self.index_dir).prune(keep)

    def _fill_from_store(self, bank: MemoryBank, name: str) -> int | None:
        """Load the bank's memories into the empty `bank`; returns the store generation read.

        The store streams the vectors chunk by chunk into the bank's tensor (in its dtype):
        the peak is the bank itself plus ids and payloads, not a float32 copy of it.
        """
        loader = bank.bulk_loader()
        loaded = self.storage.load(name, sink=loader)
        loader.finish(loaded.ids, loaded.seqs, loaded.payloads)
        bank.texts = loaded.texts
        return loaded.generation

    def _load_index(self, slot: BankSlot) -> bool:
        """Use the saved index of this bank if it is current; False if it must be rebuilt."""
        if slot.prefilter is None or self.index_dir is None or slot.generation is None:
            return False
        index = IndexCatalog(self.index_dir).load(
            slot.config.prefilter, slot.config.dim, slot.name, slot.generation, slot.bank.count
        )
        if index is None:
            return False
        slot.prefilter = index
        slot.index_origin = "loaded"
        return True

    def _save_index(self, slot: BankSlot) -> None:
        """Save the bank's index if it reflects the store's current generation. Never raises.

        The caller holds the bank's writer lock (or has the slot to itself).
        """
        pf = slot.prefilter
        if pf is None or self.index_dir is None or self.storage.read_only:
            return
        if slot.generation is None:
            self._remove_index_files(slot.name)
            return
        try:
            current = self.storage.generation(slot.name)
        except LamError:
            return
        IndexCatalog(self.index_dir).save(pf, slot.name, slot.generation, current)

    def _remove_index_files(self, name: str) -> None:
        if self.index_dir is None or self.storage.read_only:
            return
        IndexCatalog(self.index_dir).remove(name)

    def _committed(self, slot: BankSlot) -> None:
        """After a write to the bank was committed and applied: note the store generation."""
        try:
            slot.generation = self.storage.generation(slot.name)
        except LamError:
            slot.generation = None

    def close(self) -> None:
        """Save the banks' prefilter indexes (see module doc), then close the store."""
        with self._table:
            if self._closed:
                return
            self._closed = True
            # Take every bank's writer lock so no batch is half-committed at close.
            for slot in list(self._banks.values()):
                with slot.writer:
                    self._save_index(slot)
            self.storage.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- banks ----------------------------------------------------------------------------
    def _new_slot(
        self, name: str, config: BankConfig, created_at: str, *, on_load: bool
    ) -> BankSlot:
        return new_slot(
            name, config, created_at, default_device=self.default_device, on_load=on_load
        )

    def create_bank(self, name: str, config: BankConfig) -> tuple[BankInfo, bool]:
        validate_bank_name(name)
        config = config.validate()
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
        if_novel: float | None = None,  # τ: store only memories with E(ξ) > τ (novelty.py)
        texts: Sequence[str | None] | None = None,  # a text bank's, one per vector (texts.py)
    ) -> UpsertResult:
        slot = self._slot(name)
        batch = slot.bank.prepare(vectors, ids, payloads)
        with slot.writer:
            if self._banks.get(name) is not slot:
                raise BankNotFoundError(f"bank {name!r} not found", {"bank": name})
            batch, skipped = gate(slot, batch, payloads, if_novel, self.chunk_bytes)
            if not batch.ids:  # everything skipped: no write, the generation unchanged
                return UpsertResult(ids=[], count=slot.bank.count, skipped=skipped)
            # The bank mirrors the store (same ids), so it tells which ids are replacements.
            ids = batch.unique_ids
            any_replaced = slot.bank.holds_any(ids)
            replaced = [i in slot.bank for i in ids] if any_replaced else [False] * len(ids)
            seqs = self.storage.upsert(
                name, ids, batch.vectors, batch.payloads, all_new=not any_replaced,
                memory_texts=(kept := batch_texts(slot.bank, batch, texts)),
            )  # fmt: skip
            with slot.lock.write():
                self._apply(slot, batch, seqs, replaced)
                apply_texts(slot.bank, ids, kept)
                count = slot.bank.count
            self._committed(slot)
        return UpsertResult(ids=batch.ids, count=count, skipped=skipped)

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
        shards: int | None = None,
    ) -> BankInfo:
        """Restore a snapshot into bank `name` (over `shards` shards: any count; None: the
        snapshot's); `max_bytes` bounds the unpacked archive."""
        validate_bank_name(name)
        snap = snapshot_io.read_snapshot(fileobj, max_bytes=max_bytes)
        config = BankConfig.from_dict(snap.config)
        config = config if shards is None else config.with_changes(shards=shards)
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
                        snap.texts,
                    )
                if old is not None:
                    self._remove_index_files(name)  # the replaced bank's: stale from now on
                if batch.unique_ids:
                    slot.bank.apply(batch, seqs)
                    apply_texts(slot.bank, batch.unique_ids, snap.texts)
                slot.rebuild_index()
                self._committed(slot)
                self._banks[name] = slot
            return slot.info()
