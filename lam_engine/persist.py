"""The bank table backed by the store: open (load every bank), saved indexes, close.

`StoredTable` adds to the read side (`BankTable`) the durable store it was loaded from,
the prefilter indexes saved beside it, and the clock; `Engine` (engine.py) adds the write
protocol on top.

Saved prefilter indexes: `close` saves every bank's trained FAISS index (IVF, HNSW) under
`<data dir>/index/`, tagged with the bank's store write generation, and `open` loads it
instead of rebuilding it when that generation (and the prefilter config) still match the
store; otherwise (a crash after writes, a damaged file) the index is rebuilt. Each slot
tracks the generation its in-memory bank and index reflect (None once unknown).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

from .banks import Bank
from .clock import SYSTEM_CLOCK, Clock
from .config import BankConfig
from .errors import LamError
from .index import IndexCatalog
from .kernels import DEFAULT_CHUNK_BYTES
from .runtime import setup
from .slot import BankSlot, new_slot
from .store import DataDirLock, Storage
from .table import BankTable

STORE_FILE = "lam.sqlite3"
INDEX_DIR = "index"  # saved prefilter indexes, beside the store

log = logging.getLogger("lam.engine")


class StoredTable(BankTable):
    """Banks loaded from a `Storage`, with their saved indexes (module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        default_device: str = "auto",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        index_dir: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(chunk_bytes=chunk_bytes)
        self.storage = storage
        # "Now" for lifetimes and fading strengths (clock.py: tests inject a ManualClock).
        self.clock = clock
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
        clock: Clock | None = None,
        background: bool = True,
    ) -> Self:
        """Open (or create) the store under directory `path` and load every bank onto its device.

        `path=None` keeps everything in memory (tests, embedded scratch use). `background=False`
        starts no reaper: expired memories are then deleted only when the owner says so (a
        cluster replica, whose router drives expiry so that its replicas stay equal).
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
            storage,
            default_device=default_device,
            chunk_bytes=chunk_bytes,
            index_dir=index_dir,
            clock=clock or SYSTEM_CLOCK,
        )
        try:
            engine._load_all()
            if background:
                engine.start_background()
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

    def _fill_from_store(self, bank: Bank, name: str) -> int | None:
        """Load the bank's memories into the empty `bank`; returns the store generation read.

        The store streams the vectors chunk by chunk into the bank's tensor (in its dtype):
        the peak is the bank itself plus ids and payloads, not a float32 copy of it.
        """
        now = self.clock.now()
        if not self.storage.read_only:
            # Memories whose lifetime ended while the service was down are deleted for good
            # (a restart never resurrects one); a read-only store's are skipped by `load`.
            self.storage.delete_expired(name, now)
        loader = bank.bulk_loader()
        loaded = self.storage.load(name, sink=loader, now=now)
        loader.finish(loaded.ids, loaded.seqs, loaded.payloads, loaded.times)
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

    def start_background(self) -> None:
        """Start the engine's background work once the banks are loaded (Engine: the reaper)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- slots ----------------------------------------------------------------------------
    def _new_slot(
        self, name: str, config: BankConfig, created_at: str, *, on_load: bool
    ) -> BankSlot:
        return new_slot(
            name,
            config,
            created_at,
            default_device=self.default_device,
            on_load=on_load,
            clock=self.clock,
        )
