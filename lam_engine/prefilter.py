"""FAISS candidate prefilter of a bank: the only module of the project that imports faiss.

A bank of memories xi (N × d) answers a Model B query v with p = softmax(β Ξ v). For large
banks the bank asks this index for the k memories of largest inner product ξ·v and runs the
exact softmax over those candidates only; `missed_mass_bound` says how much softmax weight
the memories left out can hold at most (certified when the candidates are the true top-k).

Kinds (PrefilterConfig.kind):
- "flat": IndexIDMap2(IndexFlatIP), exact top-k, incremental add and remove.
- "ivf": IndexIVFFlat over an IndexFlatIP quantizer, trained at rebuild time; add and
  remove are incremental; retrained when N has grown 4× since the last training. Below
  IVF_MIN_TRAIN vectors it is a flat index inside (describe() says so).
- "hnsw": IndexHNSWFlat. FAISS cannot delete from an HNSW graph, so removed rows stay in
  the graph as tombstones that the search filters out (an IDSelectorBitmap of live rows,
  applied inside the graph walk, so no over-fetch is needed); the graph is rebuilt without
  them once they exceed HNSW_MAX_TOMBSTONE_FRACTION of the rows. Rows are labelled by
  their insertion position and mapped to keys here (rather than through IndexIDMap2) so
  that a key removed and added again (a replaced memory) needs no rebuild.

Saved indexes: `save` writes a trained index (IVF, HNSW) into a directory so that a restart
need not rebuild it, and `Prefilter.load` reads it back only if the caller's consistency
tag (the engine passes the bank's store generation), the dimension and the PrefilterConfig
all equal what was saved. Per bank `name` the directory holds `<name>.json`, the manifest
(tag, config, the Prefilter's own state, the names of its data files), and immutable data
files `<name>.<token>.faiss` (+ `<name>.<token>.labels.npy` for HNSW). A save writes and
fsyncs new data files, then atomically replaces the manifest (temp file, fsync, rename,
fsync of the directory), then deletes the older data files: a crash at any point leaves
either the old or the new manifest, each with the data files it names. A flat index
(kind "flat", or IVF below IVF_MIN_TRAIN) is not saved: rebuilding it is a copy.

Thread-safety: concurrent `search` calls are safe (FAISS reads only, and search-time
parameters go in per-call SearchParameters). `rebuild`, `add`, `remove` and
`set_search_params` must not run concurrently with each other or with `search`: the
bank holds its write lock around them. `save` reads the index only: it may run
alongside `search`, not alongside a mutation.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .config import PrefilterConfig
from .errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteError,
)

# FAISS computes flat inner products with a plain loop unless a search batch has at least
# this many queries (128000 in this build), and only uses BLAS above it. Measured here
# (d=384, N=1e5, k=256): B=32 takes 102 ms on the loop and 31 ms with BLAS, B=256 834 ms
# and 127 ms; B=1 is the same either way. So BLAS from the first query on.
faiss.cvar.distance_compute_blas_threshold = 1

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
# Rebuild an HNSW graph once its tombstones exceed this fraction of its rows.
HNSW_MAX_TOMBSTONE_FRACTION = 0.25

_KINDS = ("flat", "ivf", "hnsw")

# Version of the saved-index layout (manifest + data files); another version is not read.
SAVED_INDEX_FORMAT = 1
_TMP_MARK = ".tmp-"  # temporary files: "<final name>.tmp-<token>"


class SavedIndexUnusable(Exception):
    """A saved index cannot be used: absent, stale (another tag or config) or damaged.

    `damaged` is True when files exist but cannot be read or disagree with each other
    (worth a warning); False when there is simply nothing current to load.
    """

    def __init__(self, reason: str, *, damaged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.damaged = damaged


def set_threads(n: int) -> None:
    """Number of OpenMP threads FAISS uses (process-wide); nothing else here changes it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError("threads must be an integer ≥ 1", {"threads": n})
    faiss.omp_set_num_threads(n)


def missed_mass_bound(cand_scores: np.ndarray, n_total: int, beta: float) -> np.ndarray:
    """Upper bound ε on the softmax mass of the memories outside each row's candidates.

    cand_scores: (B, k) inner products ξ·v of the candidates, -inf where a row has fewer
    than k (FAISS -1 padding). With s_k the smallest valid score of a row and k its number
    of valid candidates, every left-out memory scores at most s_k when the candidates are
    the true top-k, so its softmax mass is at most
        ε = (N−k)·e^{β s_k} / (Σ_{i∈C} e^{β s_i} + (N−k)·e^{β s_k})
    (x / (A + x) grows with x). Computed in float64 log space: β·s can reach ~1e3.
    ε = 0 when k = N; a row with no valid candidate of a non-empty bank has ε = 1.
    Returns (B,) float64.
    """
    scores = np.asarray(cand_scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InvalidInputError("cand_scores must be (B, k)", {"shape": list(scores.shape)})
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise NonFiniteError("cand_scores must be finite or -inf")
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise InvalidParameterError("beta must be finite and > 0", {"beta": beta})
    valid = np.isfinite(scores)  # (B, k)
    k_row = valid.sum(axis=1)  # (B,)
    missing = np.maximum(int(n_total) - k_row, 0).astype(np.float64)  # (B,) N − k
    eps = np.zeros(scores.shape[0], dtype=np.float64)
    has_cand = k_row > 0
    eps[~has_cand & (missing > 0)] = 1.0
    rows = has_cand & (missing > 0)
    if not rows.any():
        return eps
    z = beta * scores[rows]  # (R, k), -inf on padding
    z_k = np.min(np.where(valid[rows], z, np.inf), axis=1)  # (R,) β s_k
    log_out = np.log(missing[rows]) + z_k  # (R,) log of (N−k)·e^{β s_k}
    shift = np.maximum(np.max(z, axis=1), log_out)  # (R,)
    in_sum = np.exp(z - shift[:, None]).sum(axis=1)  # (R,) padding contributes e^{-inf} = 0
    out_term = np.exp(log_out - shift)  # (R,)
    eps[rows] = out_term / (in_sum + out_term)
    return eps


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


def _ivf_nlist(config: PrefilterConfig, n: int) -> int:
    wanted = config.nlist if config.nlist is not None else round(4 * np.sqrt(n))
    return int(max(1, min(wanted, n // IVF_MIN_POINTS_PER_LIST)))


class Prefilter:
    """FAISS index over a bank's memories xi, keyed by the bank's stable int64 keys.

    `add` takes keys absent from the index (to replace a vector: `remove` then `add`).
    `search` returns inner-product scores, best first, with -1 keys and -inf scores
    where fewer than k memories exist.
    """

    def __init__(self, config: PrefilterConfig, dim: int) -> None:
        config.validate()
        if config.kind not in _KINDS:
            raise InvalidParameterError(
                f"a Prefilter needs kind in {_KINDS}", {"kind": config.kind}
            )
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidParameterError("dim must be an integer ≥ 1", {"dim": dim})
        self._config = config
        self._dim = dim
        self._nprobe = config.nprobe
        self._ef_search = config.ef_search
        self._effective_kind: str = "flat" if config.kind == "ivf" else config.kind
        self._trained_at = 0  # IVF: N at the last training
        self._nlist = 0
        # HNSW bookkeeping: label (insertion position in the graph) → key, -1 once removed;
        # a bitmap of live labels for the search-time IDSelector.
        self._label_keys = np.empty(0, dtype=np.int64)
        self._live_bits = np.zeros(0, dtype=np.uint8)
        self._tombstones = 0
        self._index: Any = None
        self._quantizer: Any = None
        # Bumped by every change of the content; `_saved` records (directory, name, tag,
        # version, manifest) of the last save or load, so an unchanged index is not rewritten.
        self._version = 0
        self._saved: tuple[Path, str, Any, int, dict[str, Any]] | None = None
        self._reset(0)

    # ----------------------------------------------------------------- building

    def _reset(self, n_expected: int) -> None:
        """A fresh empty index of the effective kind (untrained)."""
        d = self._dim
        if self._effective_kind == "flat":
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        elif self._effective_kind == "ivf":
            self._nlist = _ivf_nlist(self._config, n_expected)
            quantizer = faiss.IndexFlatIP(d)
            self._quantizer = quantizer  # the IVF index does not own its quantizer
            self._index = faiss.IndexIVFFlat(quantizer, d, self._nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            hnsw = faiss.IndexHNSWFlat(d, self._config.m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self._config.ef_construction
            hnsw.hnsw.efSearch = self._ef_search
            self._index = hnsw
            self._label_keys = np.empty(0, dtype=np.int64)
            self._live_bits = np.zeros(0, dtype=np.uint8)
            self._tombstones = 0

    def rebuild(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content by these memories (and retrain an IVF quantizer)."""
        keys = _as_keys(keys)
        vectors = _as_vectors(vectors, self._dim, "vectors")
        _check_pair(keys, vectors)
        self._build(keys, vectors)

    def _build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._version += 1
        n = int(keys.shape[0])
        if self._config.kind == "ivf":
            self._effective_kind = "ivf" if n >= IVF_MIN_TRAIN else "flat"
        self._reset(n)
        if self._effective_kind == "ivf":
            self._train_ivf(vectors)
            self._trained_at = n
        elif self._config.kind == "ivf":
            self._trained_at = 0
        self._insert(keys, vectors)

    def _train_ivf(self, vectors: np.ndarray) -> None:
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
        if self._effective_kind == "hnsw":
            start = int(self._index.ntotal)
            self._index.add(vectors)
            self._label_keys = np.concatenate([self._label_keys, keys])
            self._set_live(np.arange(start, start + keys.size), True)
        else:
            self._index.add_with_ids(vectors, keys)

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

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add memories whose keys are not in the index yet."""
        keys = _as_keys(keys)
        vectors = _as_vectors(vectors, self._dim, "vectors")
        _check_pair(keys, vectors)
        if keys.size == 0:
            return
        if self._config.kind == "ivf":
            n_after = self.ntotal + int(keys.size)
            untrained_ready = self._effective_kind == "flat" and n_after >= IVF_MIN_TRAIN
            grown = (
                self._effective_kind == "ivf" and n_after >= IVF_RETRAIN_GROWTH * self._trained_at
            )
            if untrained_ready or grown:
                # Retraining re-reads every vector: amortized O(1) per add with 4× growth.
                old_keys, old_vectors = self._export()
                self._build(
                    np.concatenate([old_keys, keys]), np.concatenate([old_vectors, vectors])
                )
                return
        self._insert(keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        """Remove these keys; keys not in the index are ignored."""
        keys = _as_keys(keys)
        if keys.size == 0 or self.ntotal == 0:
            return
        if self._effective_kind != "hnsw":
            if self._index.remove_ids(faiss.IDSelectorBatch(keys)):
                self._version += 1
            return
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

    def _export(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, vectors) of the live content, read back from the FAISS index."""
        index = self._index
        n = int(index.ntotal)
        if n == 0:
            return np.empty(0, dtype=np.int64), np.empty((0, self._dim), dtype=np.float32)
        if self._effective_kind == "flat":
            keys = faiss.vector_to_array(index.id_map).astype(np.int64)
            vectors = index.index.reconstruct_n(0, n)
            return keys, np.ascontiguousarray(vectors, dtype=np.float32)
        if self._effective_kind == "hnsw":
            live = self._label_keys >= 0
            vectors = faiss.downcast_index(index.storage).reconstruct_n(0, n)
            return self._label_keys[live].copy(), np.ascontiguousarray(vectors[live])
        from faiss.contrib.inspect_tools import get_invlist

        invlists = index.invlists
        key_parts, vec_parts = [], []
        for list_no in range(index.nlist):
            ids, codes = get_invlist(invlists, list_no)
            if ids.size:
                key_parts.append(np.asarray(ids, dtype=np.int64))
                # IVFFlat codes are the raw float32 vectors.
                vec_parts.append(np.asarray(codes).view(np.float32).reshape(-1, self._dim))
        return np.concatenate(key_parts), np.ascontiguousarray(np.concatenate(vec_parts))

    # ----------------------------------------------------------------- saving

    @property
    def worth_saving(self) -> bool:
        """True when reading the index back beats rebuilding it (trained IVF, HNSW)."""
        return self._effective_kind != "flat"

    def saved_bytes(self) -> int:
        """About how many bytes `save` writes (vectors, ids or graph links, centroids)."""
        n, d = int(self._index.ntotal), self._dim
        if self._effective_kind == "hnsw":
            # float32 vectors, int32 links (2m on level 0, m per upper level, ~1/m of the
            # nodes), offsets and levels, the label array.
            return n * (4 * d + 4 * (2 * self._config.m + 2) + 20) + (1 << 20)
        return n * (4 * d + 8) + self._nlist * (4 * d + 32) + (1 << 20)

    def _state(self) -> dict[str, Any]:
        return {
            "effective_kind": self._effective_kind,
            "ntotal": int(self._index.ntotal),
            "nlist": self._nlist,
            "trained_at": self._trained_at,
            "tombstones": self._tombstones,
        }

    def is_saved_at(self, directory: Path | str, name: str) -> bool:
        """True when the content is unchanged since it was saved to or loaded from there."""
        saved = self._saved
        directory = Path(directory)
        return (
            saved is not None
            and saved[0] == directory
            and saved[1] == name
            and saved[3] == self._version
            and all((directory / f).is_file() for f in saved[4]["files"].values())
        )

    def save(self, directory: Path | str, name: str, tag: Any) -> str:
        """Save the index as bank `name` in `directory`, tagged with `tag` (JSON-able).

        Returns what was done: "written"; "tagged" (the index is unchanged since it was
        last saved or loaded there: only a new manifest was written); "unchanged" (same
        tag too: nothing written); "skipped" (not worth saving: what was saved under `name`
        is removed). Raises OSError or RuntimeError (FAISS) when writing fails; the files
        of the previous save then stay as they were.
        """
        directory = Path(directory)
        if not self.worth_saving:
            remove_saved(directory, name)
            self._saved = None
            return "skipped"
        tag = json.loads(json.dumps(tag))  # the form it takes in the manifest
        saved = self._saved
        unchanged = self.is_saved_at(directory, name)
        if unchanged and saved is not None and saved[2] == tag:
            return "unchanged"
        directory.mkdir(parents=True, exist_ok=True)
        if unchanged and saved is not None:
            files = dict(saved[4]["files"])
            written: list[Path] = []
        else:
            stem = f"{name}.{secrets.token_hex(8)}"
            files = {"index": f"{stem}.faiss"}
            if self._effective_kind == "hnsw":
                files["labels"] = f"{stem}.labels.npy"
            written = [directory / f for f in files.values()]
        try:
            if written:
                path = directory / files["index"]
                faiss.write_index(self._index, str(path))
                _fsync_path(path)
                if "labels" in files:
                    with open(directory / files["labels"], "wb") as f:
                        np.save(f, self._label_keys, allow_pickle=False)
                        f.flush()
                        os.fsync(f.fileno())
            manifest = {
                "format": SAVED_INDEX_FORMAT,
                "bank": name,
                "tag": tag,
                "dim": self._dim,
                "config": self._config.to_dict(),
                "state": self._state(),
                "files": files,
                "faiss_version": faiss.__version__,
            }
            _write_atomic(directory / f"{name}.json", json.dumps(manifest, indent=1).encode())
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self._saved = (directory, name, tag, self._version, manifest)
        keep = {f"{name}.json", *files.values()}
        for path in _files_of(directory, name):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        return "written" if written else "tagged"

    @classmethod
    def load(
        cls, config: PrefilterConfig, dim: int, directory: Path | str, name: str, tag: Any
    ) -> Prefilter:
        """The index saved as bank `name`, if it was saved with exactly this tag, config and dim.

        Raises SavedIndexUnusable otherwise (nothing saved, stale, or damaged files).
        """
        directory = Path(directory)
        manifest_path = directory / f"{name}.json"
        try:
            raw = manifest_path.read_bytes()
        except FileNotFoundError:
            raise SavedIndexUnusable("no saved index") from None
        except OSError as exc:
            raise SavedIndexUnusable(f"manifest unreadable: {exc}", damaged=True) from exc
        try:
            manifest = json.loads(raw)
            if not isinstance(manifest, dict):
                raise TypeError("not an object")
            if manifest.get("format") != SAVED_INDEX_FORMAT:
                raise SavedIndexUnusable(f"saved in format {manifest.get('format')!r}")
            fields = ("bank", "tag", "dim", "config", "state", "files")
            bank, saved_tag, saved_dim, saved_config, state, files = (manifest[k] for k in fields)
        except SavedIndexUnusable:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise SavedIndexUnusable(f"manifest corrupt: {exc}", damaged=True) from exc
        tag = json.loads(json.dumps(tag))
        if bank != name:
            raise SavedIndexUnusable(f"manifest is for bank {bank!r}", damaged=True)
        if not isinstance(files, dict) or not all(
            isinstance(f, str) and f.startswith(f"{name}.") and "/" not in f and os.sep not in f
            for f in files.values()
        ):
            raise SavedIndexUnusable("manifest names files outside the bank's", damaged=True)
        if saved_tag != tag:
            raise SavedIndexUnusable(f"saved at {saved_tag}, the bank is at {tag}")
        if saved_dim != dim or saved_config != config.to_dict():
            raise SavedIndexUnusable("saved for another configuration")
        pf = cls(config, dim)
        try:
            pf._restore(directory, state, files)
        except SavedIndexUnusable:
            raise
        except Exception as exc:  # FAISS raises RuntimeError; numpy ValueError/OSError
            raise SavedIndexUnusable(f"index file unreadable: {exc}", damaged=True) from exc
        pf._saved = (directory, name, tag, pf._version, manifest)
        return pf

    def _restore(self, directory: Path, state: dict[str, Any], files: dict[str, str]) -> None:
        def bad(what: str) -> SavedIndexUnusable:
            return SavedIndexUnusable(f"saved index inconsistent: {what}", damaged=True)

        kind = state["effective_kind"]
        allowed = {"flat": (), "ivf": ("ivf",), "hnsw": ("hnsw",)}[self._config.kind]
        if kind not in allowed:
            raise bad(f"effective kind {kind!r} for kind {self._config.kind!r}")
        expected_type: Any = {"ivf": faiss.IndexIVFFlat, "hnsw": faiss.IndexHNSWFlat}[kind]
        index: Any = faiss.read_index(str(directory / files["index"]))
        if not isinstance(index, expected_type):
            raise bad(f"index type {type(index).__name__}")
        if index.d != self._dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise bad("dimension or metric")
        ntotal = int(state["ntotal"])
        if int(index.ntotal) != ntotal or not index.is_trained:
            raise bad(f"{int(index.ntotal)} vectors, the manifest says {ntotal}")
        self._effective_kind = kind
        self._index = index
        self._quantizer = None  # a read index owns its quantizer
        if kind == "ivf":
            if int(index.nlist) != int(state["nlist"]):
                raise bad("nlist")
            self._nlist = int(state["nlist"])
            self._trained_at = int(state["trained_at"])
        else:
            with open(directory / files["labels"], "rb") as f:
                labels = np.load(f, allow_pickle=False)
            if labels.dtype != np.int64 or labels.shape != (ntotal,):
                raise bad("label array")
            tombstones = int(np.count_nonzero(labels < 0))
            if tombstones != int(state["tombstones"]):
                raise bad("tombstones")
            index.hnsw.efConstruction = self._config.ef_construction
            index.hnsw.efSearch = self._ef_search
            self._label_keys = np.ascontiguousarray(labels)
            self._live_bits = np.packbits(labels >= 0, bitorder="little")
            self._tombstones = tombstones

    # ----------------------------------------------------------------- searching

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change search-time parameters without a rebuild (IVF nprobe, HNSW efSearch)."""
        if nprobe is not None:
            if isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1:
                raise InvalidParameterError("nprobe must be an integer ≥ 1", {"nprobe": nprobe})
            self._nprobe = nprobe
        if ef_search is not None:
            if isinstance(ef_search, bool) or not isinstance(ef_search, int) or ef_search < 1:
                raise InvalidParameterError(
                    "ef_search must be an integer ≥ 1", {"ef_search": ef_search}
                )
            self._ef_search = ef_search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (B, k), keys int64 (B, k)) by inner product, best first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidParameterError("k must be an integer ≥ 1", {"k": k})
        k = int(k)
        queries = _as_vectors(queries, self._dim, "queries")
        b = queries.shape[0]
        scores = np.full((b, k), -np.inf, dtype=np.float32)  # (B, k)
        keys = np.full((b, k), -1, dtype=np.int64)  # (B, k)
        n_live = self.ntotal
        if b == 0 or n_live == 0:
            return scores, keys
        # Ask FAISS for no more than exists: padding beyond N is ours, and a huge k
        # would make FAISS allocate (B, k) heaps for nothing.
        k_eff = min(k, n_live)
        if self._effective_kind == "hnsw":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(self._ef_search, k_eff)
            if self._tombstones:
                selector = faiss.IDSelectorBitmap(
                    self._live_bits.size, faiss.swig_ptr(self._live_bits)
                )
                params.sel = selector
            found_scores, labels = self._index.search(queries, k_eff, params=params)
            found_keys = np.where(labels >= 0, self._label_keys[np.maximum(labels, 0)], -1)
        elif self._effective_kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = min(self._nprobe, self._nlist)
            found_scores, found_keys = self._index.search(queries, k_eff, params=params)
        else:
            found_scores, found_keys = self._index.search(queries, k_eff)
        missing = found_keys < 0
        found_scores = np.where(missing, -np.inf, found_scores).astype(np.float32)
        scores[:, :k_eff] = found_scores
        keys[:, :k_eff] = found_keys
        return scores, keys

    # ----------------------------------------------------------------- describing

    @property
    def exact_topk(self) -> bool:
        """True when the candidates are the true top-k (flat, or IVF still untrained)."""
        return self._effective_kind == "flat"

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) - self._tombstones

    @property
    def kind(self) -> str:
        return self._config.kind

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self._config.kind,
            "effective_kind": self._effective_kind,
            "ntotal": self.ntotal,
            "trained": bool(self._index.is_trained) and self._effective_kind == self.kind,
            "exact_topk": self.exact_topk,
        }
        if self._config.kind == "ivf":
            out["nlist"] = self._nlist if self._effective_kind == "ivf" else 0
            out["nprobe"] = self._nprobe
            out["trained_at"] = self._trained_at
        elif self._config.kind == "hnsw":
            out["m"] = self._config.m
            out["ef_search"] = self._ef_search
            out["ef_construction"] = self._config.ef_construction
            out["tombstones"] = self._tombstones
        return out


# ----------------------------------------------------------------- saved-index files


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Some filesystems cannot fsync a directory; the rename is then as durable as it gets.
    with contextlib.suppress(OSError):
        _fsync_path(directory)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` by `data`: temp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _files_of(directory: Path, name: str) -> list[Path]:
    """Every file saved for bank `name` (names are "<bank>." + more; bank names have no dot)."""
    try:
        return [p for p in directory.iterdir() if p.name.split(".", 1)[0] == name and "." in p.name]
    except FileNotFoundError:
        return []


def remove_saved(directory: Path | str, name: str) -> None:
    """Delete what is saved for bank `name`: the manifest first, so nothing half-remains."""
    directory = Path(directory)
    (directory / f"{name}.json").unlink(missing_ok=True)
    for path in _files_of(directory, name):
        path.unlink(missing_ok=True)


def prune_saved(directory: Path | str, keep: set[str]) -> list[str]:
    """Delete saved indexes of banks not in `keep`, and leftovers (temp files, data files no
    manifest names) of those in it. Returns the names of the deleted files."""
    directory = Path(directory)
    try:
        paths = list(directory.iterdir())
    except FileNotFoundError:
        return []
    referenced: set[str] = set()
    for name in keep:
        try:
            manifest = json.loads((directory / f"{name}.json").read_bytes())
            referenced.update({f"{name}.json", *manifest["files"].values()})
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
    removed = []
    for path in paths:
        if path.is_file() and path.name not in referenced:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
