"""Which saved index of a data directory to trust, write or drop: the engine's policy.

`Engine.close` saves every bank's trained index (IVF, HNSW) under `<data dir>/index/`,
tagged with the bank's store write generation, and `Engine.open` loads it instead of
rebuilding only when that generation (and the prefilter config, and the row count)
still match the store; otherwise (a crash after writes, a damaged file) the caller
rebuilds. A write generation is never handed out twice in a store, so equal generations
mean the same content. An index that no longer provably matches its bank is deleted,
so that an older save is not loaded either. A save goes ahead only if it leaves the data
directory's disk reserve (store/space.py) for the store's own writes.

No method here raises on I/O trouble: a saved index is a cache, and losing it costs a
rebuild, never an answer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config import PrefilterConfig
from ..store.space import room_for
from .base import Prefilter
from .files import (
    SavedIndexUnusable,
    is_saved_at,
    load_index,
    prune_saved,
    remove_saved,
    save_index,
)
from .kinds import KINDS

log = logging.getLogger("lam.engine")


class IndexCatalog:
    """The saved indexes of one data directory, one per bank name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(
        self, config: PrefilterConfig, dim: int, name: str, generation: int, count: int
    ) -> Prefilter | None:
        """The bank's saved index if it is current (generation, config, `count` rows)."""
        kind = KINDS.get(config.kind)
        if kind is None or not kind.savable:
            return None  # never saved: a copy of the vectors, as fast to rebuild as to read
        t0 = time.perf_counter()
        try:
            index = load_index(config, dim, self.directory, name, {"generation": generation})
            if index.ntotal != count:
                raise SavedIndexUnusable(
                    f"it holds {index.ntotal} memories, the bank {count}", damaged=True
                )
        except SavedIndexUnusable as exc:
            if exc.damaged:
                log.warning("bank %r: saved index not used (%s); rebuilding", name, exc)
            else:
                log.info("bank %r: %s; building the index", name, exc)
            return None
        log.info(
            "bank %r: loaded its saved index (%d vectors) in %.1f s",
            name,
            index.ntotal,
            time.perf_counter() - t0,
        )
        return index

    def save(
        self, index: Prefilter, name: str, generation: int, store_generation: int | None
    ) -> None:
        """Save `index`, made at `generation`, if the store is still there; else drop it."""
        if store_generation != generation:
            # Memory no longer provably matches the store (it should not happen): no save,
            # and no older save either; the next open rebuilds.
            log.warning("bank %r: index not saved: it is behind the store", name)
            self.remove(name)
            return
        size = index.saved_bytes()
        writes_data = index.worth_saving and not is_saved_at(index, self.directory, name)
        if writes_data and room_for([(self.directory.parent, size)]).ok is False:
            log.warning(
                "bank %r: index not saved: it needs about %.1f GB and the data dir is nearly full",
                name,
                size / 1e9,
            )
            self.remove(name)
            return
        t0 = time.perf_counter()
        try:
            done = save_index(index, self.directory, name, {"generation": generation})
        except Exception as exc:  # OSError (disk full, read-only), RuntimeError from FAISS
            log.warning("bank %r: could not save its index: %s", name, exc)
            self.remove(name)
            return
        if done in ("written", "tagged"):
            log.info(
                "bank %r: index %s (generation %d) in %.1f s",
                name,
                "saved" if done == "written" else "marked current",
                generation,
                time.perf_counter() - t0,
            )

    def remove(self, name: str) -> None:
        try:
            remove_saved(self.directory, name)
        except OSError as exc:
            log.warning("bank %r: could not remove its saved index: %s", name, exc)

    def prune(self, keep: set[str]) -> None:
        """Delete what belongs to no bank in `keep` (dropped banks, crash leftovers)."""
        try:
            removed = prune_saved(self.directory, keep)
        except OSError as exc:
            log.warning("could not clean %s: %s", self.directory, exc)
        else:
            if removed:
                log.info("removed %d stale file(s) from %s", len(removed), self.directory)
