"""Kind "hnsw": IndexHNSWFlat, with tombstones for removed rows.

FAISS cannot delete from an HNSW graph, so removed rows stay in the graph as tombstones
that the search filters out (an IDSelectorBitmap of live rows, applied inside the graph
walk, so no over-fetch is needed); the graph is rebuilt without them once they exceed
HNSW_MAX_TOMBSTONE_FRACTION of the rows. Rows are labelled by their insertion position
and mapped to keys here (rather than through IndexIDMap2) so that a key removed and added
again (a replaced memory) needs no rebuild.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from ..config import PrefilterConfig
from .base import Prefilter, RestoreError

# Rebuild an HNSW graph once its tombstones exceed this fraction of its rows.
HNSW_MAX_TOMBSTONE_FRACTION = 0.25


class HnswPrefilter(Prefilter):
    kind = "hnsw"

    def __init__(self, config: PrefilterConfig, dim: int) -> None:
        # label (insertion position in the graph) → key, -1 once removed; a bitmap of live
        # labels for the search-time IDSelector.
        self._label_keys = np.empty(0, dtype=np.int64)
        self._live_bits = np.zeros(0, dtype=np.uint8)
        self._tombstones = 0
        super().__init__(config, dim)

    @property
    def effective_kind(self) -> str:
        return "hnsw"

    def _reset(self, n_expected: int) -> None:
        hnsw = faiss.IndexHNSWFlat(self._dim, self._config.m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self._config.ef_construction
        hnsw.hnsw.efSearch = self._ef_search
        self._index = hnsw
        self._label_keys = np.empty(0, dtype=np.int64)
        self._live_bits = np.zeros(0, dtype=np.uint8)
        self._tombstones = 0

    def _insert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if keys.size == 0:
            return
        self._version += 1
        start = int(self._index.ntotal)
        self._index.add(vectors)
        self._label_keys = np.concatenate([self._label_keys, keys])
        self._set_live(np.arange(start, start + keys.size), True)

    def _set_live(self, labels: np.ndarray, live: bool) -> None:
        n_bytes = (int(self._label_keys.size) + 7) // 8
        if self._live_bits.size < n_bytes:
            grown = np.zeros(max(n_bytes, 2 * self._live_bits.size), dtype=np.uint8)
            grown[: self._live_bits.size] = self._live_bits
            self._live_bits = grown
        bits = np.unpackbits(self._live_bits, bitorder="little")
        bits[labels] = 1 if live else 0
        # IDSelectorBitmap reads bit (i & 7) of byte i >> 3: little bit order.
        self._live_bits = np.packbits(bits, bitorder="little")

    def _remove(self, keys: np.ndarray) -> None:
        labels = np.flatnonzero(np.isin(self._label_keys, keys))  # live labels only: -1 ∉ keys
        if labels.size == 0:
            return
        self._version += 1
        self._label_keys[labels] = -1
        self._set_live(labels, False)
        self._tombstones += int(labels.size)
        if self._tombstones > HNSW_MAX_TOMBSTONE_FRACTION * self._label_keys.size:
            # The graph still walks through tombstones; past this share it is cheaper to
            # rebuild than to keep paying for them on every search.
            live_keys, live_vectors = self._export()
            self._build(live_keys, live_vectors)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        params.efSearch = max(self._ef_search, k)
        if self._tombstones:
            params.sel = faiss.IDSelectorBitmap(
                self._live_bits.size, faiss.swig_ptr(self._live_bits)
            )
        scores, labels = self._index.search(queries, k, params=params)
        keys = np.where(labels >= 0, self._label_keys[np.maximum(labels, 0)], -1)
        return scores, keys

    def _export(self) -> tuple[np.ndarray, np.ndarray]:
        n = int(self._index.ntotal)
        if n == 0:
            return np.empty(0, dtype=np.int64), np.empty((0, self._dim), dtype=np.float32)
        live = self._label_keys >= 0
        vectors = faiss.downcast_index(self._index.storage).reconstruct_n(0, n)
        return self._label_keys[live].copy(), np.ascontiguousarray(vectors[live])

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) - self._tombstones

    # ---- saving -------------------------------------------------------------------------
    def saved_bytes(self) -> int:
        # float32 vectors, int32 links (2m on level 0, m per upper level, ~1/m of the
        # nodes), offsets and levels, the label array.
        n, d = int(self._index.ntotal), self._dim
        return n * (4 * d + 4 * (2 * self._config.m + 2) + 20) + (1 << 20)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"labels": self._label_keys}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "tombstones": self._tombstones}

    def restore(self, index: Any, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._check_restored(index, faiss.IndexHNSWFlat, state)
        labels = arrays["labels"]
        if labels.dtype != np.int64 or labels.shape != (int(state["ntotal"]),):
            raise RestoreError("label array")
        tombstones = int(np.count_nonzero(labels < 0))
        if tombstones != int(state["tombstones"]):
            raise RestoreError("tombstones")
        index.hnsw.efConstruction = self._config.ef_construction
        index.hnsw.efSearch = self._ef_search
        self._index = index
        self._label_keys = np.ascontiguousarray(labels)
        self._live_bits = np.packbits(labels >= 0, bitorder="little")
        self._tombstones = tombstones

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "m": self._config.m,
            "ef_search": self._ef_search,
            "ef_construction": self._config.ef_construction,
            "tombstones": self._tombstones,
        }
