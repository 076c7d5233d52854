"""The prefilter protocol: what every kind of FAISS index over a bank does, written once.

A bank of memories xi (N × d) answers a Model B query v with p = softmax(β Ξ v). For large
banks the bank asks its prefilter for the k memories of largest inner product ξ·v and runs
the exact softmax over those candidates only (math/bound.py certifies what the others can
hold). `Prefilter` validates every input here, once; a kind (flat.py, ivf.py, hnsw.py)
implements the FAISS side behind the underscored hooks.

Thread-safety: concurrent `search` calls are safe (FAISS reads only, and search-time
parameters go in per-call SearchParameters). `rebuild`, `add`, `remove` and
`set_search_params` must not run concurrently with each other or with `search`: the
bank holds its write lock around them. Saving (files.py) reads the index only: it may run
alongside `search`, not alongside a mutation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import faiss
import numpy as np

from ..config import PrefilterConfig
from ..errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteError,
)
from .runtime import serial_search


class RestoreError(ValueError):
    """A saved index disagrees with its manifest (files.py turns it into SavedIndexUnusable)."""


def _as_keys(keys: Any) -> np.ndarray:
    arr = np.asarray(keys)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInputError("keys must be a 1-D integer array", {"shape": list(arr.shape)})
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and arr.min() < 0:
        # -1 is FAISS's "no result"; a negative key would be indistinguishable from it.
        raise InvalidInputError("keys must be ≥ 0")
    return arr


def _as_vectors(vectors: Any, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"{what} must be (n, {dim})", {"shape": list(arr.shape), "dim": dim}
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise NonFiniteError(f"{what} must be finite")
    return arr


def _check_pair(keys: np.ndarray, vectors: np.ndarray) -> None:
    if keys.shape[0] != vectors.shape[0]:
        raise InvalidInputError(
            "keys and vectors differ in length",
            {"keys": int(keys.shape[0]), "vectors": int(vectors.shape[0])},
        )
    if np.unique(keys).size != keys.size:
        raise DuplicateIdError("keys must be unique")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(f"{name} must be an integer ≥ 1", {name: value})
    return value


class Prefilter(ABC):
    """FAISS index over a bank's memories xi, keyed by the bank's stable int64 keys.

    `add` takes keys absent from the index (to replace a vector: `remove` then `add`).
    `search` returns inner-product scores, best first, with -1 keys and -inf scores
    where fewer than k memories exist. Every kind stores the vectors it was given
    uncompressed (Flat codes: IndexFlatIP, IndexIVFFlat, IndexHNSWFlat), so a score is the
    float32 inner product of the query with the vector as added; the prefiltered pass at the
    returned state uses these scores as the candidates' ξ·v (retrieval.py). A kind with
    lossy codes (PQ, SQ) would break that and must rescore its candidates.
    """

    kind: ClassVar[str]
    # Whether an index of this kind can ever be worth saving (files.py, catalog.py).
    savable: ClassVar[bool] = True

    def __init__(self, config: PrefilterConfig, dim: int) -> None:
        config.validate()
        if config.kind != self.kind:
            raise InvalidParameterError(
                f"a {type(self).__name__} needs kind {self.kind!r}", {"kind": config.kind}
            )
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidParameterError("dim must be an integer ≥ 1", {"dim": dim})
        self._config = config
        self._dim = dim
        self._nprobe = config.nprobe
        self._ef_search = config.ef_search
        self._index: Any = None
        # Bumped by every change of the content; files.py compares it with the version it
        # saved (`saved`: directory, name, tag, version, manifest) to skip rewriting.
        self._version = 0
        self.saved: tuple[Any, str, Any, int, dict[str, Any]] | None = None
        self._reset(0)

    # ---- the kind's hooks --------------------------------------------------------------
    @abstractmethod
    def _reset(self, n_expected: int) -> None:
        """A fresh empty FAISS index (untrained)."""

    def _build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._version += 1
        self._reset(int(keys.shape[0]))
        self._insert(keys, vectors)

    @abstractmethod
    def _insert(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._insert(keys, vectors)

    @abstractmethod
    def _remove(self, keys: np.ndarray) -> None: ...

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's (scores, keys) for k ≤ ntotal, -1 keys where it found fewer."""

    def _search_native(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The same search by the engine's own C code, or None where the kind has none.

        Called outside `serial_search`: that sets the calling thread's OpenMP thread count,
        which torch shares and the native code sizes its own threads by.
        """
        return None

    @abstractmethod
    def _export(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, vectors) of the live content, read back from the FAISS index."""

    @property
    @abstractmethod
    def effective_kind(self) -> str:
        """The structure inside: an "ivf" index is "flat" until it is trained."""

    # ---- saving (files.py) --------------------------------------------------------------
    @property
    def worth_saving(self) -> bool:
        """True when reading the index back beats rebuilding it (trained IVF, HNSW)."""
        return self.effective_kind != "flat"

    def saved_bytes(self) -> int:
        """About how many bytes a save writes (vectors, ids, and the kind's own parts)."""
        return int(self._index.ntotal) * (4 * self._dim + 8) + (1 << 20)

    @property
    def faiss_index(self) -> Any:
        return self._index

    @property
    def version(self) -> int:
        return self._version

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays saved beside the FAISS index, by name (HNSW: its label map)."""
        return {}

    def state(self) -> dict[str, Any]:
        """What the manifest records to restore this index (and check the files against)."""
        return {"effective_kind": self.effective_kind, "ntotal": int(self._index.ntotal)}

    def restore(self, index: Any, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Adopt a FAISS index read from disk; RestoreError if it disagrees with `state`."""
        raise RestoreError(f"a {self.kind!r} index is never saved")

    def _check_restored(self, index: Any, expected_type: Any, state: dict[str, Any]) -> None:
        if state["effective_kind"] != self.kind:
            raise RestoreError(f"effective kind {state['effective_kind']!r} for kind {self.kind!r}")
        if not isinstance(index, expected_type):
            raise RestoreError(f"index type {type(index).__name__}")
        if index.d != self._dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise RestoreError("dimension or metric")
        ntotal = int(state["ntotal"])
        if int(index.ntotal) != ntotal or not index.is_trained:
            raise RestoreError(f"{int(index.ntotal)} vectors, the manifest says {ntotal}")

    # ---- the protocol -------------------------------------------------------------------
    def rebuild(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content by these memories (and retrain what is trained)."""
        keys = _as_keys(keys)
        vectors = _as_vectors(vectors, self._dim, "vectors")
        _check_pair(keys, vectors)
        self._build(keys, vectors)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add memories whose keys are not in the index yet."""
        keys = _as_keys(keys)
        vectors = _as_vectors(vectors, self._dim, "vectors")
        _check_pair(keys, vectors)
        if keys.size:
            self._add(keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        """Remove these keys; keys not in the index are ignored."""
        keys = _as_keys(keys)
        if keys.size and self.ntotal:
            self._remove(keys)

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change search-time parameters without a rebuild (IVF nprobe, HNSW efSearch)."""
        if nprobe is not None:
            self._nprobe = _positive_int(nprobe, "nprobe")
        if ef_search is not None:
            self._ef_search = _positive_int(ef_search, "ef_search")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (B, k), keys int64 (B, k)) by inner product, best first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidParameterError("k must be an integer ≥ 1", {"k": k})
        k = int(k)
        queries = _as_vectors(queries, self._dim, "queries")
        b = queries.shape[0]
        n_live = self.ntotal
        # Ask FAISS for no more than exists: padding beyond N is ours, and a huge k
        # would make FAISS allocate (B, k) heaps for nothing.
        k_eff = min(k, n_live)
        found = self._search_native(queries, k_eff) if b and n_live else None
        if found is not None and k_eff == k:
            return found  # the C searches' own (float32, int64), padded with (−inf, −1)
        scores = np.full((b, k), -np.inf, dtype=np.float32)  # (B, k)
        keys = np.full((b, k), -1, dtype=np.int64)  # (B, k)
        if b == 0 or n_live == 0:
            return scores, keys
        if found is None:
            with serial_search(b):
                found = self._search(queries, k_eff)
        found_scores, found_keys = found
        missing = found_keys < 0
        scores[:, :k_eff] = np.where(missing, -np.inf, found_scores).astype(np.float32)
        keys[:, :k_eff] = found_keys
        return scores, keys

    @property
    def light_search(self) -> bool:
        """Whether a search reads a small part of the bank (a trained IVF or HNSW index):
        the service may then answer a lone query on its event loop (ops.reads_little)."""
        return self.effective_kind in ("ivf", "hnsw")

    @property
    def exact_topk(self) -> bool:
        """True when the candidates are the true top-k (flat, or IVF still untrained)."""
        return self.effective_kind == "flat"

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def config(self) -> PrefilterConfig:
        return self._config

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "effective_kind": self.effective_kind,
            "ntotal": self.ntotal,
            "trained": bool(self._index.is_trained) and self.effective_kind == self.kind,
            "exact_topk": self.exact_topk,
        }
