"""Kind "flat": IndexIDMap2(IndexFlatIP), exact top-k, incremental add and remove.

Where the native library runs, a search reads int8 codes of the memories instead of their
float32 rows (sq8.py, csrc/lam_sq8.c) and scores exactly only the few candidates whose
bound could reach the top-k: the same top-k, certified, for a quarter of the bytes. The
codes cost 1 + 12/d bytes per coordinate beside FAISS's 4.

Never saved (files.py): it is a copy of the vectors, as fast to rebuild as to read.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from ..kernels import native
from .base import Prefilter
from .sq8 import Sq8Codes

# Candidates kept by the int8 pass per query, as a multiple of k (at least SQ8_MIN_M): the
# exact scoring stops as soon as the bound certifies the top-k, so a wide heap costs only
# its pushes, and too narrow a one a second pass (csrc/lam_sq8.c).
SQ8_M_FACTOR = 4
SQ8_MIN_M = 256
# Below this many memories per candidate the int8 pass saves little over FAISS's.
SQ8_MIN_ROWS_PER_CANDIDATE = 8


class FlatPrefilter(Prefilter):
    kind = "flat"
    savable = False

    def _reset(self, n_expected: int) -> None:
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        self._codes = Sq8Codes(self._dim)
        self._keys: tuple[int, np.ndarray] | None = None  # (version, FAISS's row → key)
        self._view: tuple[int, native.Sq8Rows] | None = None  # (version, the codes' view)

    @property
    def effective_kind(self) -> str:
        return "flat"

    def _insert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if keys.size == 0:
            return
        self._version += 1
        self._index.add_with_ids(vectors, keys)
        self._codes.append(vectors)

    def _remove(self, keys: np.ndarray) -> None:
        # FAISS compacts its rows in order (IndexFlatCodes, IndexIDMap2): the codes follow.
        keep = ~np.isin(self._row_keys(), keys)
        if self._index.remove_ids(faiss.IDSelectorBatch(keys)):
            self._version += 1
            self._codes.keep(keep)

    def _row_keys(self) -> np.ndarray:
        cached = self._keys
        if cached is None or cached[0] != self._version:
            cached = (self._version, faiss.vector_to_array(self._index.id_map).astype(np.int64))
            self._keys = cached
        return cached[1]

    def _sq8_rows(self) -> native.Sq8Rows:
        """The search's view of the codes and of FAISS's rows, made again only after a
        write: finding FAISS's buffer and checking the view took ≈ 40 µs a query, and each
        write bumps the version before FAISS's memory or the codes can move."""
        cached = self._view
        if cached is None or cached[0] != self._version:
            n = self.ntotal
            flat: Any = faiss.downcast_index(self._index.index)
            exact = faiss.rev_swig_ptr(flat.get_xb(), n * self._dim).reshape(n, self._dim)
            cached = (self._version, self._codes.rows(exact))
            self._view = cached
        return cached[1]

    def _codes_m(self, k: int) -> int | None:
        """Candidates per query for the search on the codes, or None where FAISS searches."""
        n = self.ntotal
        m = min(n, max(SQ8_M_FACTOR * k, SQ8_MIN_M))
        if n < SQ8_MIN_ROWS_PER_CANDIDATE * m or not self._codes.valid or not native.available():
            return None
        return m

    @property
    def light_search(self) -> bool:
        # One GIL-free native call over a quarter of the float32 bytes, as light as an IVF
        # search of nprobe 64 (≈ 1.5 ms at N = 10⁵ × 384).
        return self._codes_m(min(self._config.k, self.ntotal)) is not None

    def _search_native(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        m = self._codes_m(k)
        if m is None:
            return None
        scores, rows, _ = native.sq8_search(self._sq8_rows(), queries, k, m)
        # No padding to map: the codes are searched only where n ≥ 8 m ≥ 8 k (_codes_m).
        return scores, self._row_keys()[rows]

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
