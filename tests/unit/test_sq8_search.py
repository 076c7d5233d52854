"""The certified int8 flat search (csrc/lam_sq8.c, index/sq8.py) against a float64 numpy
reference and FAISS's own flat search: the same true top-k, exact scores, across the
VNNI and AVX2 paths, the retry with more candidates, and the flat prefilter's mutations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.config import PrefilterConfig
from lam_engine.index import sq8
from lam_engine.index.flat import FlatPrefilter
from lam_engine.kernels import native
from tests.harness.prefilters import faiss_search

needs_native = pytest.mark.skipif(not native.available(), reason="native code not built here")


def _rows(rng: np.random.Generator, n: int, d: int, kind: str) -> np.ndarray:
    """Memories of several shapes: unit rows, raw Gaussians, few distinct rows (ties), rows
    of very different norms, and some zero rows."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    if kind == "unit":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif kind == "ties":
        x = x[rng.integers(0, max(1, n // 7), n)]
    elif kind == "scales":
        x *= np.float32(10.0) ** rng.uniform(-3, 3, (n, 1)).astype(np.float32)
    x[rng.random(n) < 0.05] = 0.0
    return np.ascontiguousarray(x)


def _codes(x: np.ndarray) -> sq8.Sq8Codes:
    c = sq8.Sq8Codes(x.shape[1])
    c.append(x)
    return c


def _check_topk(x: np.ndarray, q: np.ndarray, k: int, scores: np.ndarray, rows: np.ndarray) -> None:
    """rows are a true top-k of each query (ties at the k-th score may go either way), in
    descending order, their scores ξ·q to float32 rounding; padding past n."""
    ref = q.astype(np.float64) @ x.T.astype(np.float64)  # (b, n)
    kk = min(k, x.shape[0])
    scale = np.abs(q).astype(np.float64) @ np.abs(x).T.astype(np.float64)  # Σ|ξ_j q_j|
    tol = 2e-6 * scale.max(axis=1) + 1e-30  # (b,)
    for i in range(q.shape[0]):
        got = rows[i, :kk]
        assert (got >= 0).all() and np.unique(got).size == kk
        assert (rows[i, kk:] == -1).all() and np.isneginf(scores[i, kk:]).all()
        np.testing.assert_allclose(scores[i, :kk], ref[i, got], rtol=0, atol=tol[i])
        assert (np.diff(scores[i, :kk]) <= 0).all()
        kth = np.sort(ref[i])[::-1][kk - 1]
        assert ref[i, got].min() >= kth - 2 * tol[i]  # nothing better was left out


def _encode_reference(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """index/sq8.py's encoding in float64 numpy: (codes (n, dp), scale, err, nrm)."""
    n, d = x.shape
    x64 = x.astype(np.float64)
    scale = (np.abs(x64).max(axis=1) / sq8.CODE_MAX).astype(np.float32)
    s64 = scale.astype(np.float64)
    c = np.clip(np.rint(x64 / np.where(s64 > 0, s64, 1.0)[:, None]), -127, 127)
    c[s64 == 0] = 0.0
    codes = np.zeros((n, sq8.padded_dim(d)), dtype=np.int8)
    codes[:, :d] = c
    deq = c * s64[:, None]
    slack = (d + 8) * 2.0**-22 * np.linalg.norm(x64, axis=1)
    err = np.linalg.norm(x64 - deq, axis=1) * (1 + 2**-20) + slack
    nrm = np.linalg.norm(deq, axis=1) * (1 + 2**-20)
    return codes, scale, err, nrm


@needs_native
def test_encode_is_the_reference_and_its_bounds_hold() -> None:
    """The C encoding's codes and scales are numpy's; err and nrm are its float64 values
    rounded up to float32, to within float32 rounding (so err ≥ ‖ξ − ξ̃‖ and nrm ≥ ‖ξ̃‖ as the
    search reads ξ̃)."""
    rng = np.random.default_rng(3)
    for kind in ("unit", "gauss", "scales"):
        x = _rows(rng, 500, 37, kind)
        c = _codes(x)
        codes, scale, err, nrm = _encode_reference(x)
        np.testing.assert_array_equal(c._row_major(), codes)
        assert np.abs(codes).max() <= sq8.CODE_MAX
        view = c.rows(x)
        np.testing.assert_array_equal(view.scale[:500], scale)
        for got, want in ((view.err[:500], err), (view.nrm[:500], nrm)):
            assert (got.astype(np.float64) >= want).all()
            assert (got.astype(np.float64) <= want * (1 + 2**-20) + 1e-30).all()  # and tight
        zero = ~x.any(axis=1)
        assert (codes[zero] == 0).all() and (scale[zero] == 0).all()


@needs_native
def test_blocks_follow_appends_and_removals() -> None:
    """The blocked codes read back row by row equal a fresh encoding of the rows they hold."""
    rng = np.random.default_rng(4)
    x = _rows(rng, 300, 21, "gauss")
    c = sq8.Sq8Codes(21)
    for a, b in ((0, 5), (5, 37), (37, 300)):
        c.append(x[a:b])
    keep = rng.random(300) < 0.6
    c.keep(keep)
    c.append(x[:9])
    held = np.concatenate([x[keep], x[:9]])
    assert len(c) == held.shape[0]
    np.testing.assert_array_equal(c._row_major(), _encode_reference(held)[0])
    view = c.rows(held)
    assert (view.scale[len(c) :] == 0).all()
    with pytest.raises(ValueError):
        c.rows(held[:-1])


@needs_native
@settings(max_examples=40, deadline=None)
@given(
    n=st.one_of(st.integers(1, 100), st.integers(1000, 4000)),
    d=st.integers(1, 70),
    b=st.integers(1, 11),
    k=st.integers(1, 40),
    m=st.integers(1, 64),
    threads=st.integers(1, 3),
    kind=st.sampled_from(["unit", "gauss", "ties", "scales"]),
    avx2_only=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_search_is_the_exact_topk(n, d, b, k, m, threads, kind, avx2_only, seed) -> None:
    """Any bank, batch (groups of 8, 4, 2, 1), k, starting m (too few candidates retries with
    more), thread count and instruction set: the true top-k with exact scores."""
    import torch

    rng = np.random.default_rng(seed)
    x = _rows(rng, n, d, kind)
    q = _rows(rng, b, d, kind if kind != "ties" else "gauss")
    q[0] = x[rng.integers(0, n)]  # a stored memory as the cue: a clear best
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        scores, rows, scored = native.sq8_search(_codes(x).rows(x), q, k, m, avx2_only=avx2_only)
    finally:
        torch.set_num_threads(before)
    _check_topk(x, q, k, scores, rows)
    assert (scored >= min(k, n)).all()


@needs_native
def test_few_exact_scores_on_a_separated_bank() -> None:
    """The point of the codes: on 20 000 unit rows with a clear best, a few hundred exact
    scores certify the top-32, on both instruction sets, with the same answer."""
    rng = np.random.default_rng(7)
    x = _rows(rng, 20_000, 96, "unit")
    q = x[:6] + 0.02 * rng.standard_normal((6, 96)).astype(np.float32)
    mem = _codes(x).rows(x)
    out = [native.sq8_search(mem, q, 32, 128, avx2_only=flag) for flag in (False, True)]
    for scores, rows, scored in out:
        _check_topk(x, q, 32, scores, rows)
        assert scored.max() < 2_000
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][0], out[1][0])


def _flat(x: np.ndarray, keys: np.ndarray) -> FlatPrefilter:
    p = FlatPrefilter(PrefilterConfig(kind="flat"), x.shape[1])
    p.rebuild(keys, x)
    return p


@needs_native
def test_flat_prefilter_searches_natively_through_mutations() -> None:
    """A flat prefilter large enough for the codes gives FAISS's candidates and scores
    after a rebuild, removals (the codes compact as FAISS does) and more additions."""
    rng = np.random.default_rng(11)
    n, d, k = 3_000, 48, 4  # m = 256 candidates: ≥ 8 m rows take the native search
    x = _rows(rng, n + 400, d, "unit")
    keys = rng.permutation(10 * (n + 400))[: n + 400].astype(np.int64)
    p = _flat(x[:n], keys[:n])
    gone = rng.choice(keys[:n], 500, replace=False)
    p.remove(gone)
    p.add(keys[n:], x[n:])
    held = ~np.isin(keys, gone)
    q = x[rng.integers(0, n + 400, 9)] + 0.05 * rng.standard_normal((9, d)).astype(np.float32)
    assert p._search_native(q, k) is not None
    got_s, got_k = p.search(q, k)
    ref_s, ref_k = faiss_search(p, q, k)
    for a, b_ in zip(got_k, ref_k, strict=True):
        assert set(a.tolist()) == set(b_.tolist())
    np.testing.assert_allclose(got_s, ref_s, rtol=0, atol=1e-5)
    assert np.isin(got_k, keys[held]).all()


@needs_native
def test_flat_prefilter_view_follows_each_write() -> None:
    """The search keeps its view of the codes and of FAISS's rows between writes: a search
    after each removal and addition (the rows move, the codes compact or grow past their
    capacity) still gives FAISS's candidates, never a stale view's."""
    rng = np.random.default_rng(14)
    d, k = 32, 4
    x = _rows(rng, 9_000, d, "unit")
    keys = rng.permutation(90_000)[:9_000].astype(np.int64)
    p = _flat(x[:2_100], keys[:2_100])
    q = x[rng.integers(0, 9_000, 5)] + 0.05 * rng.standard_normal((5, d)).astype(np.float32)
    held = np.zeros(9_000, dtype=bool)
    held[:2_100] = True
    writes = [("add", 2_100, 4_000), ("remove", 0, 600), ("add", 4_000, 9_000)]
    for what, lo, hi in [("none", 0, 0), *writes, ("remove", 3_000, 8_000)]:
        if what == "add":
            p.add(keys[lo:hi], x[lo:hi])
            held[lo:hi] = True
        elif what == "remove":
            p.remove(keys[lo:hi])
            held[lo:hi] = False
        assert p._search_native(q, k) is not None
        got_s, got_k = p.search(q, k)
        ref_s, ref_k = faiss_search(p, q, k)
        np.testing.assert_array_equal(np.sort(got_k, axis=1), np.sort(ref_k, axis=1))
        np.testing.assert_allclose(got_s, ref_s, rtol=0, atol=1e-5)
        assert np.isin(got_k, keys[held]).all()


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
def test_equal_bounds_are_scored_in_row_order(threads: int) -> None:
    """Identical memories tie in bound and score: the candidates are scored by increasing
    row among equal bounds, so the k kept are the first k rows, on any thread count."""
    import torch

    x = np.tile(_rows(np.random.default_rng(15), 1, 24, "unit"), (300, 1))
    q = x[:1] + np.float32(0.01)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        scores, rows, scored = native.sq8_search(_codes(x).rows(x), q, 7, 300)
    finally:
        torch.set_num_threads(before)
    assert sorted(rows[0].tolist()) == list(range(7))
    assert (scores[0] == scores[0, 0]).all() and scored[0] == 300


def test_flat_prefilter_small_banks_keep_faiss() -> None:
    """Below 8 m rows the codes would save little: FAISS answers (and native off too)."""
    rng = np.random.default_rng(12)
    x = _rows(rng, 500, 16, "unit")
    p = _flat(x, np.arange(500, dtype=np.int64))
    assert p._search_native(x[:2], 5) is None
    _, keys = p.search(x[:2], 5)
    assert keys[0, 0] == 0 and keys[1, 0] == 1


def test_no_codes_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the codes cannot be built, the flat index never searches them: FAISS answers."""
    monkeypatch.setattr(native, "sq8_encode", lambda *a: False)
    rng = np.random.default_rng(13)
    x = _rows(rng, 2_100, 8, "unit")
    p = FlatPrefilter(PrefilterConfig(kind="flat", k=4), 8)
    p.rebuild(np.arange(2_100, dtype=np.int64), x)
    assert not p._codes.valid
    assert p._search_native(x[:1], 4) is None and not p.light_search
    _, keys = p.search(x[:1], 4)
    assert keys[0, 0] == 0


@needs_native
def test_engine_answers_from_the_codes_as_it_does_exactly() -> None:
    """A flat bank large enough for the codes (k = 8: m = 256, 3 000 ≥ 8 m rows) answers
    steps 0 and 1 prefiltered, with the exact answer's matches, weights and energies to
    float32 rounding (β = 32: the certificate holds, ε far below the tolerance)."""
    from lam_engine import Engine
    from lam_engine.config import BankConfig
    from lam_engine.inputs import QueryInput

    rng = np.random.default_rng(21)
    x = _rows(rng, 3_000, 64, "unit")
    x[x.any(axis=1) == 0] = 1.0 / 8  # no zero rows: a normalizing bank refuses them
    engine = Engine.open(None, default_device="cpu")
    cfg = BankConfig(dim=64, beta=32.0, normalize=True, prefilter=PrefilterConfig(kind="flat", k=8))
    engine.create_bank("b", cfg)
    engine.upsert("b", x)
    assert engine._slot("b").prefilter._search_native(x[:1], 8) is not None
    cues = x[rng.integers(0, 3_000, 6)] + 0.05 * rng.standard_normal((6, 64)).astype(np.float32)
    for steps in (0, 1):
        fast, exact = (
            engine.query("b", QueryInput.build(cues, steps=steps, top_k=5, exact=e)).to_dict()
            for e in (False, True)
        )
        assert fast["prefiltered"] and not exact["prefiltered"]
        for a, b in zip(fast["results"], exact["results"], strict=True):
            assert [m["id"] for m in a["matches"]] == [m["id"] for m in b["matches"]]
            np.testing.assert_allclose(a["energy"], b["energy"], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(
                [m["weight"] for m in a["matches"]], [m["weight"] for m in b["matches"]],
                rtol=1e-4, atol=1e-6,
            )  # fmt: skip
            np.testing.assert_allclose(a["state"], b["state"], rtol=0, atol=1e-5)
            assert a["missed_mass_bound"] < 1e-3
