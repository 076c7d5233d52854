"""FAISS candidate prefilter: exactness (flat), recall (IVF, HNSW), mutations, missed-mass bound."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.config import PrefilterConfig
from lam_engine.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteError,
)
from lam_engine.index import (
    HNSW_MAX_TOMBSTONE_FRACTION,
    IVF_MAX_POINTS_PER_LIST,
    IVF_MIN_TRAIN,
    IVF_RETRAIN_GROWTH,
    Prefilter,
    SavedIndexUnusable,
    load_index,
    make_prefilter,
    prune_saved,
    remove_saved,
    save_index,
)
from lam_engine.index import files as files_module
from lam_engine.math.bound import missed_mass_bound

KINDS = ("flat", "ivf", "hnsw")


def _normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, d))
    labels = rng.integers(0, n_clusters, size=n)
    return _normalized(centers[labels] + 0.35 * rng.standard_normal((n, d)))


def _noisy(xi: np.ndarray, rows: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows.size, xi.shape[1]))
    z *= noise / np.linalg.norm(z, axis=1, keepdims=True)
    return _normalized(xi[rows] + z)


def _brute_topk(xi: np.ndarray, keys: np.ndarray, v: np.ndarray, k: int):
    s = v.astype(np.float64) @ xi.astype(np.float64).T  # (B, N)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # (B, k)
    return np.take_along_axis(s, order, axis=1), keys[order]


def _make(kind: str, xi: np.ndarray, keys: np.ndarray, **cfg) -> Prefilter:
    p = make_prefilter(PrefilterConfig(kind=kind, **cfg), xi.shape[1])
    p.rebuild(keys, xi)
    return p


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


# ----------------------------------------------------------------- flat exactness


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    d=st.integers(1, 24),
    b=st.integers(1, 6),
    k=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_flat_matches_numpy_bruteforce(n: int, d: int, b: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n, d)).astype(np.float32)
    v = rng.standard_normal((b, d)).astype(np.float32)
    keys = rng.permutation(10 * n)[:n].astype(np.int64) + 5
    p = _make("flat", xi, keys)
    scores, found = p.search(v, k)
    assert scores.shape == (b, k) and found.shape == (b, k)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    kk = min(k, n)
    ref_scores, _ = _brute_topk(xi, keys, v, kk)
    np.testing.assert_allclose(scores[:, :kk], ref_scores, rtol=1e-4, atol=1e-4)
    # Keys compared as the scores they point to: ties may be ordered either way.
    key_to_row = {int(key): i for i, key in enumerate(keys)}
    exact = v.astype(np.float64) @ xi.astype(np.float64).T
    picked = np.array(
        [[exact[r, key_to_row[int(x)]] for x in row[:kk]] for r, row in enumerate(found)]
    )
    np.testing.assert_allclose(picked, ref_scores, rtol=1e-4, atol=1e-4)
    assert len({int(x) for x in found[0, :kk]}) == kk
    assert (found[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()
    assert p.exact_topk and p.ntotal == n


@pytest.mark.parametrize("kind", KINDS)
def test_padding_when_fewer_than_k(kind: str) -> None:
    xi = _normalized(np.random.default_rng(0).standard_normal((5, 8)))
    p = _make(kind, xi, np.arange(5) + 100)
    scores, keys = p.search(xi[:2], 9)
    assert keys.shape == (2, 9)
    assert (keys[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    assert sorted(keys[0, :5].tolist()) == [100, 101, 102, 103, 104]
    assert keys[0, 0] == 100 and keys[1, 0] == 101


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_returns_only_padding(kind: str) -> None:
    p = make_prefilter(PrefilterConfig(kind=kind), 4)
    scores, keys = p.search(np.ones((3, 4), np.float32), 2)
    assert (keys == -1).all() and np.isneginf(scores).all()
    assert p.ntotal == 0


# ----------------------------------------------------------------- mutations


@pytest.mark.parametrize("kind", KINDS)
def test_add_remove_reflected_in_search(kind: str) -> None:
    n, d = 1500, 16  # ≥ IVF_MIN_TRAIN so that "ivf" really is an IVF index
    xi = _clustered(n, d, 12, seed=1)
    keys = np.arange(n, dtype=np.int64) * 2 + 1
    p = _make(kind, xi[:1200], keys[:1200])
    assert p.describe()["effective_kind"] == kind
    p.add(keys[1200:], xi[1200:])
    assert p.ntotal == n

    removed = keys[::7]
    p.remove(removed)
    p.remove(np.array([10**9], np.int64))  # unknown keys are ignored
    assert p.ntotal == n - removed.size
    # Querying with the removed vectors themselves: their keys would be the top hit.
    _, found = p.search(xi[::7], 64)
    assert not np.isin(found, removed).any()
    # Stored vectors are their own best match (unit norm); added ones included.
    live = np.setdiff1d(np.arange(n), np.arange(n)[::7])[-50:]
    _, found = p.search(xi[live], 1)
    assert (found[:, 0] == keys[live]).mean() >= 0.98

    # A removed key added back with a new vector (a replaced memory) is found again.
    new_vec = _normalized(np.random.default_rng(9).standard_normal((1, d)))
    p.add(removed[:1], new_vec)
    scores, found = p.search(new_vec, 3)
    assert found[0, 0] == removed[0]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert (found[0, 1:] != removed[0]).all()
    assert p.ntotal == n - removed.size + 1


@pytest.mark.parametrize("kind", KINDS)
def test_rebuild_round_trip(kind: str) -> None:
    n, d = 1200, 8
    xi = _clustered(n, d, 6, seed=2)
    keys = np.arange(n, dtype=np.int64) + 1000
    p = _make(kind, xi, keys)
    p.remove(keys[:300])
    p.add(keys[:100], xi[:100])
    live = np.concatenate([np.arange(100), np.arange(300, n)])
    exported_keys, exported_vectors = p._export()
    order = np.argsort(exported_keys)
    np.testing.assert_array_equal(exported_keys[order], np.sort(keys[live]))
    np.testing.assert_array_equal(exported_vectors[order], xi[np.sort(live)])
    # Rebuilding from the live content serves the same candidates as the mutated index
    # (flat: exactly; approximate kinds: the self match).
    fresh = _make(kind, xi[live], keys[live])
    assert fresh.ntotal == p.ntotal == live.size
    s1, k1 = p.search(xi[live[:40]], 5)
    s2, k2 = fresh.search(xi[live[:40]], 5)
    if kind == "flat":
        np.testing.assert_array_equal(k1, k2)
        np.testing.assert_allclose(s1, s2, rtol=1e-6)
    else:
        assert (k1[:, 0] == keys[live[:40]]).all() and (k2[:, 0] == keys[live[:40]]).all()
    # A rebuild replaces everything that was there.
    p.rebuild(keys[:10] + 10**6, xi[:10])
    _, found = p.search(xi[:10], 10)
    assert set(found.ravel().tolist()) == set((keys[:10] + 10**6).tolist())


def test_hnsw_tombstones_then_compaction() -> None:
    n, d = 400, 8
    xi = _normalized(np.random.default_rng(3).standard_normal((n, d)))
    keys = np.arange(n, dtype=np.int64)
    p = _make("hnsw", xi, keys)
    few = int(HNSW_MAX_TOMBSTONE_FRACTION * n) - 5
    p.remove(keys[:few])
    assert p.describe()["tombstones"] == few and p.ntotal == n - few
    _, found = p.search(xi[:few], 10)
    assert not np.isin(found, keys[:few]).any()
    p.remove(keys[few : few + 10])  # crosses the threshold: the graph is rebuilt
    assert p.describe()["tombstones"] == 0 and p.ntotal == n - few - 10
    _, found = p.search(xi, n)
    assert set(found[0].tolist()) - {-1} <= set(keys[few + 10 :].tolist())
    assert (found[few + 10 :, 0] == keys[few + 10 :]).all()


def test_ivf_falls_back_to_flat_until_trainable_and_retrains_on_growth() -> None:
    d = 8
    xi = _clustered(6 * IVF_MIN_TRAIN, d, 10, seed=4)
    keys = np.arange(xi.shape[0], dtype=np.int64)
    small = IVF_MIN_TRAIN // 2
    p = _make("ivf", xi[:small], keys[:small])
    info = p.describe()
    assert info["effective_kind"] == "flat" and info["trained"] is False and p.exact_topk
    p.add(keys[small:IVF_MIN_TRAIN], xi[small:IVF_MIN_TRAIN])
    info = p.describe()
    assert info["effective_kind"] == "ivf" and info["trained"] is True and not p.exact_topk
    assert info["trained_at"] == IVF_MIN_TRAIN and info["nlist"] >= 2
    assert info["nlist"] <= IVF_MIN_TRAIN // 39
    grown = IVF_RETRAIN_GROWTH * IVF_MIN_TRAIN
    p.add(keys[IVF_MIN_TRAIN : grown - 1], xi[IVF_MIN_TRAIN : grown - 1])
    assert p.describe()["trained_at"] == IVF_MIN_TRAIN  # not yet 4×
    p.add(keys[grown - 1 : grown + 7], xi[grown - 1 : grown + 7])
    assert p.describe()["trained_at"] == grown + 7 and p.ntotal == grown + 7
    _, found = p.search(xi[:200], 1)
    assert (found[:, 0] == keys[:200]).all()


# ----------------------------------------------------------------- recall


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_recall_on_clustered_data_with_defaults(kind: str) -> None:
    n, d, k = 4000, 32, 32
    xi = _clustered(n, d, 40, seed=5)
    keys = np.arange(n, dtype=np.int64) + 7
    p = _make(kind, xi, keys)
    rows = np.random.default_rng(6).choice(n, size=100, replace=False)
    v = _noisy(xi, rows, 0.3, seed=7)
    _, found = p.search(v, k)
    _, truth = _brute_topk(xi, keys, v, k)
    assert _recall(found, truth) >= 0.9


# ----------------------------------------------------------------- missed mass bound


def _direct_bound(scores: np.ndarray, n_total: int, beta: float) -> np.ndarray:
    out = []
    for row in scores.astype(np.float64):
        valid = row[np.isfinite(row)]
        rest = n_total - valid.size
        if rest <= 0:
            out.append(0.0)
            continue
        tail = rest * np.exp(beta * valid.min())
        out.append(tail / (np.exp(beta * valid).sum() + tail))
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 5),
    k=st.integers(1, 30),
    extra=st.integers(0, 500),
    beta=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_bound_matches_direct_float64(b: int, k: int, extra: int, beta: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = -np.sort(-rng.uniform(-2, 2, size=(b, k)), axis=1)
    pad = rng.integers(0, k, size=b)  # some rows have fewer valid candidates
    for r, p in enumerate(pad):
        if p:
            scores[r, k - p :] = -np.inf
    eps = missed_mass_bound(scores, k + extra, beta)
    assert eps.shape == (b,)
    np.testing.assert_allclose(eps, _direct_bound(scores, k + extra, beta), rtol=1e-10, atol=1e-15)
    assert ((eps >= 0) & (eps <= 1)).all()


def test_bound_properties() -> None:
    scores = np.array([[0.9, 0.5, 0.1], [0.3, 0.2, -np.inf]])
    # k = N: nothing is left out.
    assert missed_mass_bound(scores[:1], 3, 4.0)[0] == 0.0
    # Row 2 has 2 valid candidates of N = 3: one memory left out, scoring ≤ 0.2.
    expected = np.exp(0.8) / (np.exp(1.2) + 2 * np.exp(0.8))
    assert missed_mass_bound(scores, 3, 4.0)[1] == pytest.approx(expected, rel=1e-12)
    # β·s ~ 1e3 and beyond: finite, where the direct formula overflows.
    big = missed_mass_bound(np.array([[30.0, 29.5, 29.0]]), 10**6, 100.0)
    expected_log = (
        np.log(10**6 - 3) + 2900 - np.logaddexp.reduce([3000, 2950, 2900, np.log(10**6 - 3) + 2900])
    )
    assert np.isfinite(big).all() and np.log(big[0]) == pytest.approx(expected_log, rel=1e-9)
    # No valid candidate in a non-empty bank: all the mass is missed.
    assert missed_mass_bound(np.full((1, 4), -np.inf), 10, 1.0)[0] == 1.0
    # Sharper β concentrates the mass on the candidates (s_1 > s_k).
    betas = [1.0, 8.0, 32.0, 128.0]
    eps = [missed_mass_bound(scores[:1], 1000, bt)[0] for bt in betas]
    assert all(a > b for a, b in itertools.pairwise(eps))
    with pytest.raises(NonFiniteError):
        missed_mass_bound(np.array([[np.nan]]), 3, 1.0)
    with pytest.raises(InvalidParameterError):
        missed_mass_bound(scores, 3, 0.0)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 6),
    k=st.integers(1, 300),
    extra=st.integers(1, 10**6),
    beta=st.sampled_from([0.5, 8.0, 32.0, 250.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_bound_of_full_rows_is_the_masked_one_bit_for_bit(
    b: int, k: int, extra: int, beta: float, seed: int
) -> None:
    """Rows with k valid candidates take a path without masks (math/bound.py): the same ε,
    to the last bit, as when a padded row in the batch sends them through the masked one."""
    rng = np.random.default_rng(seed)
    scores = -np.sort(-rng.uniform(-1, 1, size=(b, k)).astype(np.float32), axis=1)
    scores[rng.random((b, k)) < 0.2] = scores[0, 0]  # ties, and the best score repeated
    padded = np.vstack([scores, np.full((1, k), -np.inf, dtype=np.float32)])
    full = missed_mass_bound(scores, k + extra, beta)
    masked = missed_mass_bound(padded, k + extra, beta)[:b]
    np.testing.assert_array_equal(full, masked)
    # The transposed view of the same scores (not C-contiguous) gives the same bits too.
    np.testing.assert_array_equal(missed_mass_bound(scores.T.copy().T, k + extra, beta), full)
    with pytest.raises(InvalidParameterError):
        missed_mass_bound(scores, k + extra, -1.0)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 400),
    k=st.integers(1, 64),
    beta=st.sampled_from([0.5, 1.0, 8.0, 32.0, 100.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_true_missed_mass_of_flat_candidates_is_below_bound(
    n: int, k: int, beta: float, seed: int
) -> None:
    d = 12
    rng = np.random.default_rng(seed)
    xi = _normalized(rng.standard_normal((n, d)))
    v = _noisy(xi, rng.integers(0, n, size=3), 0.5, seed)
    keys = np.arange(n, dtype=np.int64)
    scores, found = _make("flat", xi, keys).search(v, k)
    eps = missed_mass_bound(scores, n, beta)
    z = beta * (v.astype(np.float64) @ xi.astype(np.float64).T)  # (B, N)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for r in range(v.shape[0]):
        candidates = found[r][found[r] >= 0]
        true_missed = 1.0 - p[r, candidates].sum()
        # Slack for float32 scores: e^{β·1e-6} - 1 relative.
        assert true_missed <= eps[r] * (1 + 1e-4 * beta) + 1e-9
    if k >= n:
        assert (eps == 0).all()


# ----------------------------------------------------------------- describe, errors


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("flat", set()),
        ("ivf", {"nlist", "nprobe", "trained_at"}),
        ("hnsw", {"m", "ef_search", "ef_construction", "tombstones"}),
    ],
)
def test_describe_keys(kind: str, extra: set[str]) -> None:
    xi = _clustered(IVF_MIN_TRAIN, 8, 5, seed=8)
    p = _make(kind, xi, np.arange(IVF_MIN_TRAIN))
    info = p.describe()
    assert set(info) == {"kind", "effective_kind", "ntotal", "trained", "exact_topk"} | extra
    assert info["kind"] == kind and info["ntotal"] == IVF_MIN_TRAIN and info["trained"] is True
    assert info["exact_topk"] is (kind == "flat")
    if kind == "ivf":
        p.set_search_params(nprobe=3)
        assert p.describe()["nprobe"] == 3
    if kind == "hnsw":
        p.set_search_params(ef_search=17)
        assert p.describe()["ef_search"] == 17


def test_invalid_inputs() -> None:
    with pytest.raises(InvalidParameterError):
        make_prefilter(PrefilterConfig(kind="none"), 4)
    p = make_prefilter(PrefilterConfig(kind="flat"), 4)
    with pytest.raises(DimensionMismatchError):
        p.rebuild(np.arange(2), np.zeros((2, 5), np.float32))
    with pytest.raises(DuplicateIdError):
        p.add(np.array([1, 1]), np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidInputError):
        p.add(np.array([-1]), np.zeros((1, 4), np.float32))
    with pytest.raises(InvalidInputError):
        p.add(np.array([1, 2, 3]), np.zeros((2, 4), np.float32))
    with pytest.raises(NonFiniteError):
        p.add(np.array([1]), np.full((1, 4), np.inf, np.float32))
    with pytest.raises(InvalidParameterError):
        p.search(np.zeros((1, 4), np.float32), 0)
    with pytest.raises(DimensionMismatchError):
        p.search(np.zeros((1, 3), np.float32), 1)
    with pytest.raises(InvalidParameterError):
        p.set_search_params(nprobe=0)
    # float64 / non-contiguous inputs are accepted (copied).
    x = np.asfortranarray(np.eye(4))
    p.rebuild(np.arange(4), x)
    _, keys = p.search(x[:, ::-1][:, ::-1], 1)
    assert keys[:, 0].tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------- saving and loading

TAG = {"generation": 7}


def _mutated(kind: str, n: int = 2 * IVF_MIN_TRAIN, d: int = 8) -> tuple[Prefilter, np.ndarray]:
    """An index with a history: built, some keys removed (HNSW: tombstones), some re-added."""
    xi = _clustered(n, d, 8, seed=21)
    keys = np.arange(n, dtype=np.int64) * 3 + 5
    p = _make(kind, xi, keys)
    p.remove(keys[10:60])
    p.add(keys[10:20], xi[10:20])
    return p, xi


def _same_answers(a: Prefilter, b: Prefilter, xi: np.ndarray, k: int = 10) -> None:
    sa, ka = a.search(xi[::7], k)
    sb, kb = b.search(xi[::7], k)
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_save_then_load_gives_the_same_index(tmp_path: Path, kind: str) -> None:
    p, xi = _mutated(kind)
    assert save_index(p, tmp_path, "bank-1", TAG) == "written"
    q = load_index(p._config, 8, tmp_path, "bank-1", TAG)
    assert q.describe() == p.describe()
    if kind == "hnsw":
        assert q.describe()["tombstones"] == 50  # 50 removed; the 10 re-added got new labels
    _same_answers(p, q, xi)
    # Their hidden state (HNSW label map and live bits, IVF training size) came along too:
    # the same mutations keep them identical, tombstone compaction and retraining included.
    for index in (p, q):
        index.remove(np.arange(5, 3 * 700, 3))
        index.add(np.array([10**9]), xi[:1])
    assert q.describe() == p.describe()
    _same_answers(p, q, xi)
    names = sorted(f.name for f in tmp_path.iterdir())
    assert "bank-1.json" in names and any(n.endswith(".faiss") for n in names)
    assert all(n.startswith("bank-1.") for n in names)


def test_save_rewrites_only_what_changed(tmp_path: Path) -> None:
    p, xi = _mutated("ivf")
    assert save_index(p, tmp_path, "b", TAG) == "written"
    first = {f.name: f.stat().st_mtime_ns for f in tmp_path.iterdir()}
    assert save_index(p, tmp_path, "b", TAG) == "unchanged"
    # The same data file, a new manifest:
    assert save_index(p, tmp_path, "b", {"generation": 8}) == "tagged"
    data = [n for n in first if n.endswith(".faiss")]
    assert {f.name for f in tmp_path.iterdir()} == set(first)
    assert (tmp_path / data[0]).stat().st_mtime_ns == first[data[0]]
    with pytest.raises(SavedIndexUnusable):
        load_index(p._config, 8, tmp_path, "b", TAG)
    loaded = load_index(p._config, 8, tmp_path, "b", {"generation": 8})
    assert save_index(loaded, tmp_path, "b", {"generation": 8}) == "unchanged"
    p.add(np.array([10**9]), xi[:1])
    assert save_index(p, tmp_path, "b", {"generation": 9}) == "written"
    files = {f.name for f in tmp_path.iterdir()}
    assert data[0] not in files and len(files) == 2  # the older data file is gone
    # A flat index is not worth saving: what was saved under its name goes.
    flat = _make("flat", xi, np.arange(xi.shape[0]))
    assert save_index(flat, tmp_path, "b", TAG) == "skipped"
    assert list(tmp_path.iterdir()) == []
    small = _make("ivf", xi[:100], np.arange(100))  # below IVF_MIN_TRAIN: flat inside
    assert save_index(small, tmp_path, "b", TAG) == "skipped"


def test_load_refuses_another_tag_config_or_dim(tmp_path: Path) -> None:
    p, _ = _mutated("hnsw")
    save_index(p, tmp_path, "b", TAG)
    cfg = p._config
    cases = [
        (cfg, 8, "b", {"generation": 6}),
        (PrefilterConfig(kind="hnsw", m=16), 8, "b", TAG),
        (PrefilterConfig(kind="hnsw", ef_search=64), 8, "b", TAG),
        (PrefilterConfig(kind="ivf"), 8, "b", TAG),
        (cfg, 9, "b", TAG),
        (cfg, 8, "other", TAG),  # nothing saved under that name
    ]
    for config, dim, name, tag in cases:
        with pytest.raises(SavedIndexUnusable) as err:
            load_index(config, dim, tmp_path, name, tag)
        assert not err.value.damaged, err.value.reason
    assert load_index(cfg, 8, tmp_path, "b", TAG).ntotal == p.ntotal


def _damage(directory: Path, how: str) -> None:
    manifest_path = directory / "b.json"
    manifest = json.loads(manifest_path.read_text())
    index = directory / manifest["files"]["index"]
    if how == "garbage index":
        index.write_bytes(b"\x00garbage" * 100)
    elif how == "truncated index":
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    elif how == "missing index":
        index.unlink()
    elif how == "garbage manifest":
        manifest_path.write_bytes(b"{not json")
    elif how == "manifest of another bank":
        manifest_path.write_text(json.dumps({**manifest, "bank": "c"}))
    elif how == "wrong count":
        manifest["state"]["ntotal"] += 1
        manifest_path.write_text(json.dumps(manifest))
    elif how == "manifest not an object":
        manifest_path.write_text("[1, 2]")
    elif how == "foreign path":
        manifest["files"]["index"] = str(index.resolve())
        manifest_path.write_text(json.dumps(manifest))
    elif how == "labels":
        labels = directory / manifest["files"]["labels"]
        labels.write_bytes(labels.read_bytes()[:100])


@pytest.mark.parametrize(
    "how",
    [
        "garbage index",
        "truncated index",
        "missing index",
        "garbage manifest",
        "manifest of another bank",
        "wrong count",
        "manifest not an object",
        "foreign path",
        "labels",
    ],
)
def test_damaged_saves_are_reported_not_raised(tmp_path: Path, how: str) -> None:
    p, _ = _mutated("hnsw" if how == "labels" else "ivf")
    save_index(p, tmp_path, "b", TAG)
    _damage(tmp_path, how)
    with pytest.raises(SavedIndexUnusable) as err:
        load_index(p._config, 8, tmp_path, "b", TAG)
    assert err.value.damaged, err.value.reason


def test_a_failed_save_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    p, xi = _mutated("ivf")
    save_index(p, tmp_path, "b", TAG)
    before = sorted(f.name for f in tmp_path.iterdir())
    reference = load_index(p._config, 8, tmp_path, "b", TAG)
    p.add(np.array([10**9]), xi[:1])

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module, "_write_atomic", disk_full)
    with pytest.raises(OSError):
        save_index(p, tmp_path, "b", {"generation": 8})
    monkeypatch.undo()
    assert sorted(f.name for f in tmp_path.iterdir()) == before  # new data file removed
    _same_answers(reference, load_index(p._config, 8, tmp_path, "b", TAG), xi)


def test_remove_and_prune_saved(tmp_path: Path) -> None:
    p, _ = _mutated("ivf")
    for name in ("a", "a-b", "c"):
        p.saved = None  # write each one afresh
        save_index(p, tmp_path, name, TAG)
    (tmp_path / "a.json.tmp-0000").write_bytes(b"half")  # a save interrupted by a crash
    (tmp_path / "a.ffff.faiss").write_bytes(b"orphan")  # data no manifest names
    remove_saved(tmp_path, "a")
    assert all(not f.name.startswith("a.") for f in tmp_path.iterdir())
    assert (tmp_path / "a-b.json").exists()
    (tmp_path / "a-b.json.tmp-1111").write_bytes(b"half")
    (tmp_path / "a-b.eeee.faiss").write_bytes(b"orphan")
    removed = prune_saved(tmp_path, {"a-b"})
    assert "c.json" in removed and "a-b.json.tmp-1111" in removed
    assert "a-b.eeee.faiss" in removed
    left = sorted(f.name for f in tmp_path.iterdir())
    assert len(left) == 2 and "a-b.json" in left
    assert load_index(p._config, 8, tmp_path, "a-b", TAG).ntotal == p.ntotal
    assert prune_saved(tmp_path / "absent", set()) == []


def test_ivf_training_on_a_capped_sample_is_reproducible() -> None:
    nlist = 8
    n = 3 * nlist * IVF_MAX_POINTS_PER_LIST  # more than the cap: k-means sees a sample
    xi = _clustered(n, 16, 8, seed=31)
    keys = np.arange(n, dtype=np.int64)
    a = _make("ivf", xi, keys, nlist=nlist, nprobe=2)
    b = _make("ivf", xi, keys, nlist=nlist, nprobe=2)
    assert a.describe()["nlist"] == nlist
    _same_answers(a, b, xi, k=20)
    _, found = a.search(xi[:300], 1)
    assert (found[:, 0] == keys[:300]).mean() > 0.95


def test_importing_the_index_leaves_faiss_settings_alone() -> None:
    import subprocess
    import sys

    code = (
        "import faiss; before = faiss.cvar.distance_compute_blas_threshold\n"
        "import lam_engine, lam_engine.index\n"
        "assert faiss.cvar.distance_compute_blas_threshold == before, 'changed at import'\n"
        "lam_engine.index.setup_faiss()\n"
        "assert faiss.cvar.distance_compute_blas_threshold == 1\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
