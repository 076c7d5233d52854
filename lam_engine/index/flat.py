"""Kind "flat": IndexIDMap2(IndexFlatIP), exact top-k, incremental add and remove.

Never saved (files.py): it is a copy of the vectors, as fast to rebuild as to read.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from .base import Prefilter


class FlatPrefilter(Prefilter):
    kind = "flat"
    savable = False

    def _reset(self, n_expected: int) -> None:
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))

    @property
    def effective_kind(self) -> str:
        return "flat"

    def _insert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if keys.size == 0:
            return
        self._version += 1
        self._index.add_with_ids(vectors, keys)

    def _remove(self, keys: np.ndarray) -> None:
        if self._index.remove_ids(faiss.IDSelectorBatch(keys)):
            self._version += 1

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores: Any
        scores, keys = self._index.search(queries, k)
        return scores, keys

    def _export(self) -> tuple[np.ndarray, np.ndarray]:
        return export_id_mapped_flat(self._index, self._dim)


def export_id_mapped_flat(index: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vectors) of an IndexIDMap2(IndexFlatIP)."""
    n = int(index.ntotal)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, dim), dtype=np.float32)
    keys = faiss.vector_to_array(index.id_map).astype(np.int64)
    vectors = index.index.reconstruct_n(0, n)
    return keys, np.ascontiguousarray(vectors, dtype=np.float32)
