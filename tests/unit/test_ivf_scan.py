"""The native IVF scan (csrc/lam_ivf.c) against FAISS's own search and a numpy reference of
the same algorithm, and the prefilter's use of it across mutations and a restore."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faiss.contrib.inspect_tools import get_invlist
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.config import PrefilterConfig
from lam_engine.index import IVF_MIN_TRAIN, IvfPrefilter, load_index, save_index
from lam_engine.kernels import native
from tests.harness.prefilters import faiss_search

needs_native = pytest.mark.skipif(not native.available(), reason="native code not built here")


def _bank(n: int, d: int, seed: int) -> np.ndarray:
    xi = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return xi / np.linalg.norm(xi, axis=1, keepdims=True)


def _ivf(xi: np.ndarray, keys: np.ndarray, **cfg: int) -> IvfPrefilter:
    p = IvfPrefilter(PrefilterConfig(kind="ivf", **cfg), xi.shape[1])
    p.rebuild(keys, xi)
    assert p.effective_kind == "ivf"
    return p


def _reference(p: IvfPrefilter, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The IVF search in float64 numpy on the index's own centroids and lists."""
    index = p.faiss_index
    nlist, d = index.nlist, p.dim
    cent = index.quantizer.reconstruct_n(0, nlist).astype(np.float64)
    lists = [get_invlist(index.invlists, j) for j in range(nlist)]
    nprobe = min(p.describe()["nprobe"], nlist)
    out_s = np.full((q.shape[0], k), -np.inf)
    out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
    for b, v in enumerate(q.astype(np.float64)):
        probe = np.argsort(-(cent @ v), kind="stable")[:nprobe]
        ids = np.concatenate([lists[j][0] for j in probe])
        vec = np.concatenate([lists[j][1].view(np.float32).reshape(-1, d) for j in probe])
        s = vec.astype(np.float64) @ v
        order = np.argsort(-s, kind="stable")[:k]
        out_s[b, : order.size] = s[order]
        out_i[b, : order.size] = ids[order]
    return out_s, out_i


def _same_sets(a: np.ndarray, b: np.ndarray) -> None:
    for row_a, row_b in zip(a, b, strict=True):
        assert set(row_a.tolist()) == set(row_b.tolist())


@needs_native
@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(IVF_MIN_TRAIN, 2500),
    d=st.sampled_from([3, 8, 17, 64]),
    b=st.integers(1, 5),
    k=st.integers(1, 300),
    nprobe=st.integers(1, 40),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_native_scan_is_the_ivf_search(n, d, b, k, nprobe, threads, seed) -> None:
    """Same ids as the float64 reference of the algorithm and as FAISS, scores within float32
    rounding, descending, padded with (−inf, −1) where the probed lists hold fewer than k."""
    xi = _bank(n, d, seed)
    keys = np.random.default_rng(seed + 1).permutation(10 * n)[:n].astype(np.int64)
    p = _ivf(xi, keys, nprobe=nprobe)
    assert p._native_lists() is not None  # the search below is the native one
    q = _bank(b, d, seed + 2)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        scores, ids = p.search(q, k)
    finally:
        torch.set_num_threads(before)
    ref_s, ref_i = _reference(p, q, k)
    assert np.array_equal(ids < 0, ref_i < 0)
    _same_sets(ids, ref_i)
    np.testing.assert_allclose(scores[ids >= 0], ref_s[ref_i >= 0], rtol=0, atol=1e-5)
    assert np.all(np.isneginf(scores[ids < 0]))
    for row, found in zip(scores, ids >= 0, strict=True):
        assert np.all(np.diff(row[found]) <= 0) and found[: found.sum()].all()
    f_s, f_i = faiss_search(p, q, k)
    _same_sets(ids, f_i)
    np.testing.assert_allclose(scores, f_s, rtol=0, atol=1e-5)


@needs_native
def test_scan_follows_adds_and_removes() -> None:
    """A mutation can move FAISS's lists: the next search reads their new places."""
    xi = _bank(3000, 16, 5)
    p = _ivf(xi[:2000], np.arange(2000))
    q = xi[2500:2501]
    assert 2500 not in p.search(q, 10)[1]
    p.add(np.arange(2000, 3000), xi[2000:])
    scores, ids = p.search(q, 10)
    assert ids[0, 0] == 2500 and scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    p.remove(np.array([2500]))
    assert 2500 not in p.search(q, 10)[1]
    _same_sets(p.search(q, 10)[1], _reference(p, q, 10)[1])


@needs_native
def test_scan_reads_a_restored_index(tmp_path) -> None:
    xi = _bank(2000, 16, 6)
    p = _ivf(xi, np.arange(2000))
    q = _bank(3, 16, 7)
    want = p.search(q, 50)
    save_index(p, tmp_path, "b", "tag")
    restored = load_index(PrefilterConfig(kind="ivf"), 16, tmp_path, "b", "tag")
    assert restored.effective_kind == "ivf" and restored._native_lists() is not None
    got = restored.search(q, 50)
    _same_sets(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)


def test_faiss_search_where_the_native_code_is_off() -> None:
    xi = _bank(1500, 8, 8)
    p = _ivf(xi, np.arange(1500))
    q = _bank(2, 8, 9)
    ref_s, ref_i = _reference(p, q, 20)
    f_s, f_i = faiss_search(p, q, 20)
    _same_sets(f_i, ref_i)
    np.testing.assert_allclose(f_s, ref_s, rtol=0, atol=1e-5)
