"""Kind "ivf": IndexIVFFlat over an IndexFlatIP quantizer, trained at rebuild time.

Add and remove are incremental; the quantizer is retrained when N has grown
IVF_RETRAIN_GROWTH× since the last training. Below IVF_MIN_TRAIN vectors the index is a
flat one inside (exact, and as fast; describe() says so).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist

from ..config import PrefilterConfig
from ..kernels import native
from .base import Prefilter, RestoreError
from .flat import export_id_mapped_flat

# Fewer vectors than this: an "ivf" prefilter is a flat index inside (exact, and as fast).
IVF_MIN_TRAIN = 1000
# FAISS k-means wants at least 39 training points per centroid.
IVF_MIN_POINTS_PER_LIST = 39
# Training sample per centroid: k-means costs (sample × nlist × d) per iteration. FAISS's
# own cap is 256; measured on 5·10⁵ random unit vectors (d=128, nlist 2828, nprobe 32,
# 600 noisy queries, 2 seeds), 128 halves the training time at an unchanged top-1
# agreement at β=32 (0.998; 0.945 vs 0.961 with twice the noise) and recall@32 0.177 vs
# 0.182; 64 lost more (0.172, 0.933). Banks below 4·√N·128 (N ≲ 262000) use every vector.
IVF_MAX_POINTS_PER_LIST = 128
# Retrain the IVF coarse quantizer when N has grown by this factor since the last training.
IVF_RETRAIN_GROWTH = 4


def ivf_nlist(config: PrefilterConfig, n: int) -> int:
    wanted = config.nlist if config.nlist is not None else round(4 * np.sqrt(n))
    return int(max(1, min(wanted, n // IVF_MIN_POINTS_PER_LIST)))


class IvfPrefilter(Prefilter):
    kind = "ivf"

    def __init__(self, config: PrefilterConfig, dim: int) -> None:
        self._trained = False  # below IVF_MIN_TRAIN: a flat index inside
        self._trained_at = 0  # N at the last training
        self._nlist = 0
        self._quantizer: Any = None
        # (version, where the lists lie) for the native scan; None: not read yet.
        self._lists: tuple[int, native.IvfLists | None] | None = None
        super().__init__(config, dim)

    @property
    def effective_kind(self) -> str:
        return "ivf" if self._trained else "flat"

    def _reset(self, n_expected: int) -> None:
        d = self._dim
        self._lists = None
        if not self._trained:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
            return
        self._nlist = ivf_nlist(self._config, n_expected)
        quantizer = faiss.IndexFlatIP(d)
        self._quantizer = quantizer  # the IVF index does not own its quantizer
        self._index = faiss.IndexIVFFlat(quantizer, d, self._nlist, faiss.METRIC_INNER_PRODUCT)

    def _build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._version += 1
        n = int(keys.shape[0])
        self._trained = n >= IVF_MIN_TRAIN
        self._reset(n)
        if self._trained:
            self._train(vectors)
            self._trained_at = n
        else:
            self._trained_at = 0
        self._insert(keys, vectors)

    def _train(self, vectors: np.ndarray) -> None:
        n = vectors.shape[0]
        cap = self._nlist * IVF_MAX_POINTS_PER_LIST
        if n > cap:
            # A fixed seed keeps rebuilds of the same bank reproducible.
            rows = np.sort(np.random.default_rng(0).choice(n, size=cap, replace=False))
            sample = np.ascontiguousarray(vectors[rows])
        else:
            sample = vectors
        self._index.train(sample)

    def _insert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if keys.size == 0:
            return
        self._version += 1
        self._index.add_with_ids(vectors, keys)

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        n_after = self.ntotal + int(keys.size)
        untrained_ready = not self._trained and n_after >= IVF_MIN_TRAIN
        grown = self._trained and n_after >= IVF_RETRAIN_GROWTH * self._trained_at
        if untrained_ready or grown:
            # Retraining re-reads every vector: amortized O(1) per add with 4× growth.
            old_keys, old_vectors = self._export()
            self._build(np.concatenate([old_keys, keys]), np.concatenate([old_vectors, vectors]))
            return
        self._insert(keys, vectors)

    def _remove(self, keys: np.ndarray) -> None:
        if self._index.remove_ids(faiss.IDSelectorBatch(keys)):
            self._version += 1

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores: Any
        if not self._trained:
            scores, keys = self._index.search(queries, k)
            return scores, keys
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self._nprobe, self._nlist)
        scores, keys = self._index.search(queries, k, params=params)
        return scores, keys

    def _search_native(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        lists = self._native_lists() if self._trained else None
        if lists is None:
            return None
        return native.ivf_search(lists, queries, min(self._nprobe, self._nlist), k)

    def _native_lists(self) -> native.IvfLists | None:
        """The index's centroids and lists for csrc/lam_ivf.c, read again after a mutation
        (which may move a list: the bank's write lock keeps searches out meanwhile); None
        where the native code cannot run or the index is not FAISS's in-memory kind."""
        if not native.available():
            return None
        cached = self._lists
        if cached is not None and cached[0] == self._version:
            return cached[1]
        lists = _lists_of(self._index, self._dim)
        self._lists = (self._version, lists)
        return lists

    def _export(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._trained:
            return export_id_mapped_flat(self._index, self._dim)
        if int(self._index.ntotal) == 0:
            return np.empty(0, dtype=np.int64), np.empty((0, self._dim), dtype=np.float32)
        key_parts, vec_parts = [], []
        for list_no in range(self._index.nlist):
            ids, codes = get_invlist(self._index.invlists, list_no)
            if ids.size:
                key_parts.append(np.asarray(ids, dtype=np.int64))
                # IVFFlat codes are the raw float32 vectors.
                vec_parts.append(np.asarray(codes).view(np.float32).reshape(-1, self._dim))
        return np.concatenate(key_parts), np.ascontiguousarray(np.concatenate(vec_parts))

    # ---- saving -------------------------------------------------------------------------
    def saved_bytes(self) -> int:
        return super().saved_bytes() + self._nlist * (4 * self._dim + 32)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "nlist": self._nlist, "trained_at": self._trained_at}

    def restore(self, index: Any, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._check_restored(index, faiss.IndexIVFFlat, state)
        if int(index.nlist) != int(state["nlist"]):
            raise RestoreError("nlist")
        self._lists = None
        self._trained = True
        self._index = index
        self._quantizer = None  # a read index owns its quantizer
        self._nlist = int(state["nlist"])
        self._trained_at = int(state["trained_at"])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "nlist": self._nlist if self._trained else 0,
            "nprobe": self._nprobe,
            "trained_at": self._trained_at,
        }


def _lists_of(index: Any, dim: int) -> native.IvfLists | None:
    invlists = faiss.downcast_InvertedLists(index.invlists)
    quantizer = faiss.downcast_index(index.quantizer)
    if not isinstance(invlists, faiss.ArrayInvertedLists) or not isinstance(
        quantizer, faiss.IndexFlat
    ):
        return None
    if quantizer.metric_type != faiss.METRIC_INNER_PRODUCT or invlists.code_size != 4 * dim:
        return None
    nlist = int(index.nlist)
    sizes = np.fromiter((invlists.list_size(j) for j in range(nlist)), np.int64, nlist)
    # An empty list's vectors may have no storage (NULL, which SWIG hands back as None).
    codes = np.fromiter(
        (int(invlists.get_codes(j)) if n else 0 for j, n in enumerate(sizes)), np.int64, nlist
    )
    ids = np.fromiter(
        (int(invlists.get_ids(j)) if n else 0 for j, n in enumerate(sizes)), np.int64, nlist
    )
    centroids = faiss.rev_swig_ptr(quantizer.get_xb(), nlist * dim).reshape(nlist, dim)
    return native.IvfLists(
        centroids=centroids, codes=codes, ids=ids, sizes=sizes, mean_rows=float(sizes.mean())
    )
