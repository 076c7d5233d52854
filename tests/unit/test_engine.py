"""Engine behaviour against numpy references: store, retrieve, energy, durability, errors."""

from __future__ import annotations

import hashlib
import io
import threading

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lam_engine import (
    BankConfig,
    BankExistsError,
    BankNotFoundError,
    DeviceUnavailableError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyBankError,
    EmptyBatchError,
    Engine,
    InvalidInputError,
    InvalidParameterError,
    MemoryNotFoundError,
    NonconvexLagrangianError,
    NonFiniteError,
    PrefilterConfig,
    StorageError,
)
from lam_engine.store import SCHEMA_VERSION
from tests import reference as oracle


def np_softmax_step(xi: np.ndarray, v: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(Ξᵀ softmax(βΞv), log Σ exp(βΞv)) from the one oracle, tests/reference.py."""
    return oracle.step(xi, v, beta), oracle.logsumexp(oracle.logits(xi, v, beta))


@pytest.fixture
def engine() -> Engine:
    e = Engine.open(None)
    yield e
    e.close()


def make_bank(engine: Engine, name: str = "b", n: int = 50, d: int = 8, seed: int = 0, **cfg):
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n, d)).astype(np.float32)
    engine.create_bank(name, BankConfig(dim=d, **cfg))
    ids = [f"m{i}" for i in range(n)]
    engine.upsert(name, xi, ids=ids, payloads=[{"i": i} for i in range(n)])
    return xi, ids


# ---- banks --------------------------------------------------------------------------------


def test_create_is_idempotent_and_conflicts_on_different_config(engine: Engine) -> None:
    info, created = engine.create_bank("faces", BankConfig(dim=4))
    assert created and info.count == 0 and info.device == "cpu"
    again, created2 = engine.create_bank("faces", BankConfig(dim=4))
    assert not created2 and again.created_at == info.created_at
    with pytest.raises(BankExistsError):
        engine.create_bank("faces", BankConfig(dim=5))


@pytest.mark.parametrize("name", ["", "Faces", "-x", "a/b", "..", "é", "a" * 65])
def test_bank_names_are_validated(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidParameterError):
        engine.create_bank(name, BankConfig(dim=2))
    assert engine.list_banks() == []


def test_cuda_without_gpu_is_a_typed_error(engine: Engine) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; covered by the gpu test")
    with pytest.raises(DeviceUnavailableError):
        engine.create_bank("g", BankConfig(dim=2, device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bank_matches_cpu_reference(engine: Engine) -> None:
    xi, _ = make_bank(engine, "g", device="cuda", beta=2.0)
    q = xi[:3] + 0.1
    state = np.stack([r.state for r in engine.query("g", q).results])
    ref, _ = np_softmax_step(xi, q, 2.0)
    np.testing.assert_allclose(state, ref, atol=1e-5)


# ---- store --------------------------------------------------------------------------------


def test_content_address_is_sha256_of_float32_bytes(engine: Engine) -> None:
    engine.create_bank("c", BankConfig(dim=3))
    v = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    res = engine.upsert("c", [v.tolist(), v.tolist()])
    expected = hashlib.sha256(v.astype("<f4").tobytes()).hexdigest()
    assert res.ids == [expected, expected] and res.count == 1


def test_content_address_after_normalization(engine: Engine) -> None:
    engine.create_bank("n", BankConfig(dim=3, normalize=True))
    v = np.array([3.0, 4.0, 12.0])
    res = engine.upsert("n", [v.tolist()])
    stored = (v / np.linalg.norm(v)).astype(np.float32)
    assert res.ids[0] == hashlib.sha256(stored.astype("<f4").tobytes()).hexdigest()
    np.testing.assert_array_equal(engine.get_memory("n", res.ids[0]).vector, stored)


def test_upsert_replaces_in_place(engine: Engine) -> None:
    _xi, ids = make_bank(engine, n=5, d=2)
    res = engine.upsert("b", [[9.0, 9.0]], ids=["m2"], payloads=[{"new": True}])
    assert res.count == 5
    rec = engine.get_memory("b", "m2")
    assert rec.vector.tolist() == [9.0, 9.0] and rec.payload == {"new": True}
    records, _ = engine.scroll("b", limit=10)
    assert [r.id for r in records] == ids  # position kept


@pytest.mark.parametrize(
    ("vectors", "ids", "payloads", "error"),
    [
        ([[1.0, 2.0, 3.0]], None, None, DimensionMismatchError),
        ([[1.0, float("nan")]], None, None, NonFiniteError),
        ([[1.0, float("inf")]], None, None, NonFiniteError),
        ([[1e39, 0.0]], None, None, NonFiniteError),
        ([], None, None, EmptyBatchError),
        ([[1.0, 2.0], [3.0, 4.0]], ["a", "a"], None, DuplicateIdError),
        ([[1.0, 2.0]], [""], None, InvalidInputError),
        ([[1.0, 2.0]], None, ["not a dict"], InvalidInputError),
        ([[1.0, 2.0]], ["a", "b"], None, InvalidInputError),
        ("garbage", None, None, InvalidInputError),
    ],
)
def test_bad_batches_change_nothing(tmp_path, vectors, ids, payloads, error) -> None:
    engine = Engine.open(tmp_path)
    xi, _ = make_bank(engine, n=4, d=2)
    with pytest.raises(error):
        engine.upsert("b", vectors, ids=ids, payloads=payloads)
    assert engine.bank_info("b").count == 4
    engine.close()
    reopened = Engine.open(tmp_path)
    records, _ = reopened.scroll("b", limit=10)
    assert len(records) == 4
    np.testing.assert_array_equal(np.stack([r.vector for r in records]), xi)
    reopened.close()


def test_failed_commit_leaves_memory_unchanged(engine: Engine, monkeypatch) -> None:
    make_bank(engine, n=3, d=2)

    def fail(*args, **kwargs):
        raise StorageError("disk full")

    monkeypatch.setattr(engine.storage, "upsert", fail)
    with pytest.raises(StorageError):
        engine.upsert("b", [[1.0, 1.0]], ids=["new"])
    assert engine.bank_info("b").count == 3
    with pytest.raises(MemoryNotFoundError):
        engine.get_memory("b", "new")


def test_unknown_bank_and_memory(engine: Engine) -> None:
    with pytest.raises(BankNotFoundError):
        engine.upsert("nope", [[1.0]])
    make_bank(engine, n=2, d=2)
    with pytest.raises(MemoryNotFoundError):
        engine.get_memory("b", "zzz")
    with pytest.raises(MemoryNotFoundError):
        engine.delete_memory("b", "zzz")


def test_delete_compacts_and_scroll_pages_in_order(engine: Engine) -> None:
    xi, ids = make_bank(engine, n=200, d=4)
    gone = ids[::3]
    assert engine.delete_memories("b", [*gone, "unknown"]) == len(gone)
    alive = [i for i in ids if i not in set(gone)]
    seen, cursor = [], None
    while True:
        page, cursor = engine.scroll("b", limit=17, cursor=cursor)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == alive
    # Retrieval ignores deleted rows: the reference over the survivors agrees.
    keep = np.array([i not in set(gone) for i in ids])
    q = xi[:5]
    res = engine.query("b", q, beta=1.5, top_k=3)
    ref, _lse = np_softmax_step(xi[keep], q, 1.5)
    np.testing.assert_allclose(np.stack([r.state for r in res.results]), ref, atol=1e-5)
    assert all(m.id in alive for r in res.results for m in r.matches)


# ---- retrieval ----------------------------------------------------------------------------


@given(
    n=st.integers(1, 60),
    d=st.integers(1, 12),
    b=st.integers(1, 5),
    beta=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**16),
)
def test_one_step_matches_numpy(n: int, d: int, b: int, beta: float, seed: int) -> None:
    engine = Engine.open(None)
    xi, ids = make_bank(engine, n=n, d=d, seed=seed)
    rng = np.random.default_rng(seed + 1)
    q = rng.standard_normal((b, d)).astype(np.float32)
    res = engine.query("b", q, beta=beta, top_k=n)
    v1, _ = np_softmax_step(xi, q, beta)
    _, lse1 = np_softmax_step(xi, v1.astype(np.float32), beta)
    for i, r in enumerate(res.results):
        np.testing.assert_allclose(r.state, v1[i], rtol=1e-4, atol=1e-4)
        # The energy, weights and scores are those at the returned state.
        e_ref = 0.5 * float(np.sum(r.state.astype(np.float64) ** 2)) - lse1[i] / beta
        assert r.energy == pytest.approx(e_ref, rel=1e-4, abs=1e-4)
        weights = [m.weight for m in r.matches]
        assert weights == sorted(weights, reverse=True)
        assert sum(weights) == pytest.approx(1.0, abs=1e-4)
        for m in r.matches[:3]:
            j = ids.index(m.id)
            assert m.score == pytest.approx(float(xi[j] @ r.state), rel=1e-4, abs=1e-4)
    engine.close()


def test_multistep_converges_to_a_fixed_point(engine: Engine) -> None:
    xi, _ = make_bank(engine, n=20, d=16, seed=3)
    res = engine.query("b", xi[:4] * 0.8, beta=4.0, steps=50, tol=1e-6)
    for r in res.results:
        assert r.converged and 1 <= r.steps <= 50
        nxt, _ = np_softmax_step(xi, r.state[None, :], 4.0)
        assert np.linalg.norm(nxt[0] - r.state) <= 1e-5


def test_masked_query_clamps_known_features(engine: Engine) -> None:
    xi, _ids = make_bank(engine, n=30, d=10, seed=5)
    cue = xi[7].copy()
    mask = np.zeros(10, dtype=bool)
    mask[:5] = True
    cue[~mask] = 123.0  # whatever the client sent there is ignored
    res = engine.query("b", [cue], mask=[mask.tolist()], beta=3.0, steps=3, tol=0.0)
    r = res.results[0]
    # Reference: zero unknown features, then v ← clamp(Ξᵀ softmax(βΞv)) three times.
    v = np.where(mask, cue, 0.0)[None, :]
    for _ in range(3):
        step, _ = np_softmax_step(xi, v, 3.0)
        v = np.where(mask, cue, step)
    np.testing.assert_allclose(r.state, v[0], atol=1e-5)
    assert np.array_equal(r.state[:5], cue[:5])
    e = engine.energy("b", [r.state], beta=3.0).energies[0]
    assert e == pytest.approx(r.energy, abs=1e-6)


def test_energy_and_gradient_match_numpy(engine: Engine) -> None:
    xi, _ = make_bank(engine, n=40, d=6, seed=9)
    v = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    out = engine.energy("b", v, beta=2.5, gradient=True)
    step, lse = np_softmax_step(xi, v, 2.5)
    e_ref = 0.5 * (v.astype(np.float64) ** 2).sum(1) - lse / 2.5
    np.testing.assert_allclose(out.energies, e_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.gradients, v - step, atol=1e-5)
    with_c = engine.energy("b", v, beta=2.5, constants=True).energies
    m = np.linalg.norm(xi.astype(np.float64), axis=1).max()
    np.testing.assert_allclose(with_c, e_ref + np.log(40) / 2.5 + 0.5 * m**2, rtol=1e-5)
    assert (with_c >= 0).all()


def test_empty_bank_and_bad_params(engine: Engine) -> None:
    engine.create_bank("e", BankConfig(dim=2))
    with pytest.raises(EmptyBankError):
        engine.query("e", [[1.0, 0.0]])
    with pytest.raises(EmptyBankError):
        engine.energy("e", [[1.0, 0.0]])
    engine.upsert("e", [[1.0, 0.0]])
    for bad in [
        {"beta": 0},
        {"beta": -1.0},
        {"beta": float("nan")},
        {"steps": -1},
        {"tol": -1},
        {"top_k": -1},
        {"steps": 1.5},
    ]:
        with pytest.raises(InvalidParameterError):
            engine.query("e", [[1.0, 0.0]], **bad)
    with pytest.raises(DimensionMismatchError):
        engine.query("e", [[1.0, 0.0]], mask=[[True]])


@pytest.mark.parametrize(("dtype", "atol"), [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_reduced_precision_banks(engine: Engine, dtype: str, atol: float) -> None:
    xi, _ = make_bank(engine, n=64, d=16, seed=4, dtype=dtype)
    q = xi[:4]
    res = engine.query("b", q, beta=1.0)
    stored = torch.from_numpy(xi).to(getattr(torch, dtype)).float().numpy()
    ref, _ = np_softmax_step(stored, q, 1.0)
    np.testing.assert_allclose(np.stack([r.state for r in res.results]), ref, atol=atol)


# ---- prefilter ----------------------------------------------------------------------------


def _normalized_bank(engine: Engine, n: int, d: int, k: int, tol: float = 1e-3):
    rng = np.random.default_rng(11)
    xi = rng.standard_normal((n, d))
    xi = (xi / np.linalg.norm(xi, axis=1, keepdims=True)).astype(np.float32)
    pf = PrefilterConfig(kind="flat", k=k, min_size=1, tolerance=tol)
    engine.create_bank("p", BankConfig(dim=d, normalize=True, prefilter=pf))
    engine.upsert("p", xi)
    return xi, rng


# k per β so that the certificate holds for some queries (a smaller β spreads the softmax
# mass and needs more candidates); at β = 16, k = 256 some queries fall back and some not.
@pytest.mark.parametrize(("beta", "k"), [(1.0, 1500), (8.0, 2000), (16.0, 256), (32.0, 64)])
def test_certified_prefilter_is_within_two_eps_m(engine: Engine, beta: float, k: int) -> None:
    xi, rng = _normalized_bank(engine, n=3000, d=32, k=k, tol=0.5)
    q = xi[:16] + 0.2 * rng.standard_normal((16, 32)).astype(np.float32)
    pre = engine.query("p", q, beta=beta, top_k=1)
    exact = engine.query("p", q, beta=beta, top_k=1, exact=True)
    # Not vacuous: some answers come from the candidates (else only the fallback is tested).
    assert pre.prefiltered and any(a.prefiltered for a in pre.results)
    m = 1.0
    for a, b in zip(pre.results, exact.results, strict=True):
        if a.prefiltered:
            assert a.missed_mass_bound <= 0.5
            assert np.linalg.norm(a.state - b.state) <= 2 * a.missed_mass_bound * m + 1e-5
        else:  # fell back: the answer is the exact one
            np.testing.assert_allclose(a.state, b.state, atol=1e-6)


def test_prefilter_falls_back_when_bound_is_loose(engine: Engine) -> None:
    xi, rng = _normalized_bank(engine, n=3000, d=32, k=32, tol=1e-3)
    q = xi[:8] + 0.2 * rng.standard_normal((8, 32)).astype(np.float32)
    loose = engine.query("p", q, beta=1.0)  # at β = 1, 32 candidates miss most of the mass
    exact = engine.query("p", q, beta=1.0, exact=True)
    assert not loose.prefiltered
    for a, b in zip(loose.results, exact.results, strict=True):
        np.testing.assert_allclose(a.state, b.state, atol=1e-6)
    sharp = engine.query("p", xi[:8], beta=64.0)
    assert sharp.prefiltered and all(r.missed_mass_bound <= 1e-3 for r in sharp.results)


def test_flat_prefilter_with_all_candidates_equals_exact(engine: Engine) -> None:
    rng = np.random.default_rng(1)
    xi = rng.standard_normal((300, 8)).astype(np.float32)
    pf = PrefilterConfig(kind="flat", k=299, min_size=1, tolerance=1.0)
    engine.create_bank("f", BankConfig(dim=8, prefilter=pf))
    engine.upsert("f", xi)
    engine.delete_memories("f", [engine.scroll("f", 1)[0][0].id])
    q = rng.standard_normal((4, 8)).astype(np.float32)
    a = engine.query("f", q, beta=0.7, top_k=3)
    b = engine.query("f", q, beta=0.7, top_k=3, exact=True)
    assert a.prefiltered
    for x, y in zip(a.results, b.results, strict=True):
        np.testing.assert_allclose(x.state, y.state, atol=1e-5)
        assert x.missed_mass_bound == 0.0
        assert [m.id for m in x.matches] == [m.id for m in y.matches]


# ---- durability and snapshots ---------------------------------------------------------------


def test_reopen_round_trips_exactly(tmp_path) -> None:
    engine = Engine.open(tmp_path)
    _xi, ids = make_bank(engine, n=100, d=5, normalize=True, beta=3.0)
    engine.delete_memories("b", ids[:10])
    before = engine.scroll("b", limit=1000)[0]
    info = engine.bank_info("b")
    engine.close()
    again = Engine.open(tmp_path)
    after = again.scroll("b", limit=1000)[0]
    assert [r.id for r in after] == [r.id for r in before]
    assert [r.payload for r in after] == [r.payload for r in before]
    assert all(np.array_equal(a.vector, b.vector) for a, b in zip(after, before, strict=True))
    assert again.bank_info("b").config == info.config
    again.close()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_reopen_streams_the_bank_back_bit_for_bit(tmp_path, dtype: str, monkeypatch) -> None:
    import lam_engine.store.load as storage_module

    # Small load chunks: the bank is filled over many of them.
    monkeypatch.setattr(storage_module, "LOAD_CHUNK_BYTES", 6 * 4 * 70)
    monkeypatch.setattr(storage_module, "_LOAD_CHUNK_ROWS", (1, 1000))
    engine = Engine.open(tmp_path)
    _xi, ids = make_bank(engine, n=500, d=6, dtype=dtype)
    engine.delete_memories("b", ids[100:300])  # compacted: rows and keys no longer aligned
    engine.upsert("b", np.ones((2, 6), np.float32), ids=[ids[7], "late"], payloads=[None, {}])
    bank = engine._banks["b"].bank
    before = (bank.xi.clone(), bank.keys.copy(), list(bank._ids), list(bank._payloads))
    engine.close()
    again = Engine.open(tmp_path)
    bank = again._banks["b"].bank
    assert bank.xi.dtype == before[0].dtype and torch.equal(bank.xi, before[0])
    assert bank.keys.tolist() == before[1].tolist()
    assert bank._ids == before[2] and bank._payloads == before[3]
    assert bank.bias is None and bank.count == 301 and bank.xi.shape[0] == 301
    assert again.get_memory("b", "late").payload == {}
    again.upsert("b", np.ones((1, 6), np.float32) * 2, ids=["after"])  # grows from the load
    assert again.scroll("b", limit=1000)[0][-1].id == "after"
    again.close()


def test_snapshot_round_trip_is_exact(engine: Engine) -> None:
    _xi, _ids = make_bank(engine, n=30, d=4, dtype="float16")
    buf = io.BytesIO()
    engine.export_snapshot("b", buf)
    buf.seek(0)
    info = engine.import_snapshot("copy", buf)
    assert info.count == 30 and info.config == engine.bank_info("b").config
    a, b = engine.scroll("b", 100)[0], engine.scroll("copy", 100)[0]
    assert [(r.id, r.payload) for r in a] == [(r.id, r.payload) for r in b]
    assert all(np.array_equal(x.vector, y.vector) for x, y in zip(a, b, strict=True))
    buf.seek(0)
    with pytest.raises(BankExistsError):
        engine.import_snapshot("copy", buf)
    buf.seek(0)
    engine.upsert("copy", [[1.0] * 4], ids=["extra"])
    assert engine.import_snapshot("copy", buf, replace=True).count == 30


# ---- concurrency ----------------------------------------------------------------------------


def test_queries_never_see_half_a_batch(engine: Engine) -> None:
    """Each batch stores 10 copies of one direction; a query near it sees 0 or 10 of them."""
    d = 16
    engine.create_bank("c", BankConfig(dim=d, beta=50.0))
    engine.upsert("c", [[0.0] * (d - 1) + [1.0]], ids=["anchor"])
    basis = np.eye(d, dtype=np.float32)
    errors: list[str] = []

    def writer() -> None:
        for b in range(d - 1):
            engine.upsert(
                "c",
                np.repeat(basis[b : b + 1], 10, 0) * (1 + np.arange(10)[:, None] * 1e-3),
                ids=[f"{b}-{i}" for i in range(10)],
            )

    def reader() -> None:
        for _ in range(60):
            res = engine.query("c", basis[: d - 1], top_k=10, beta=50.0)
            for b, r in enumerate(res.results):
                hits = sum(m.id.startswith(f"{b}-") for m in r.matches)
                if hits not in (0, 10):
                    errors.append(f"batch {b}: {hits}")

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert engine.bank_info("c").count == 1 + 10 * (d - 1)


# ---- saved prefilter indexes ------------------------------------------------------------------


def _indexed_bank(engine: Engine, kind: str, name: str = "ix", n: int = 3000, d: int = 16):
    """A bank with a trainable prefilter, filled in one batch (IVF trains on all of it)."""
    rng = np.random.default_rng(5)
    xi = rng.standard_normal((n, d)).astype(np.float32)
    pf = PrefilterConfig(kind=kind, k=64, min_size=1, tolerance=1.0)
    engine.create_bank(name, BankConfig(dim=d, beta=16.0, normalize=True, prefilter=pf))
    engine.upsert(name, xi, ids=[f"m{i}" for i in range(n)])
    return xi


def _answers(engine: Engine, name: str, q: np.ndarray) -> list[tuple]:
    res = engine.query(name, q, top_k=5)
    return [
        (
            r.prefiltered,
            r.missed_mass_bound,
            r.state.tobytes(),
            [(m.id, m.score) for m in r.matches],
        )
        for r in res.results
    ]


@pytest.fixture
def count_rebuilds(monkeypatch):
    """Counts Prefilter.rebuild calls (a rebuild at open means the saved index was not used)."""
    from lam_engine.index import Prefilter

    calls: list[int] = []
    real = Prefilter.rebuild

    def counting(self, keys, vectors):
        calls.append(len(keys))
        return real(self, keys, vectors)

    monkeypatch.setattr(Prefilter, "rebuild", counting)
    return calls


def _saved_files(tmp_path) -> list[str]:
    index_dir = tmp_path / "index"
    return sorted(f.name for f in index_dir.iterdir()) if index_dir.exists() else []


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_saved_index_is_loaded_on_reopen(tmp_path, kind: str, count_rebuilds) -> None:
    engine = Engine.open(tmp_path)
    xi = _indexed_bank(engine, kind)
    engine.delete_memories("ix", [f"m{i}" for i in range(0, 300, 3)])
    engine.upsert("ix", xi[:5] * 2, ids=[f"new{i}" for i in range(5)])
    q = xi[1::50] + 0.1
    before, info = _answers(engine, "ix", q), engine.bank_info("ix")
    assert before[0][0]  # served by the prefilter
    engine.close()
    assert any(name.endswith(".faiss") for name in _saved_files(tmp_path))
    count_rebuilds.clear()
    again = Engine.open(tmp_path)
    assert count_rebuilds == [] and again._banks["ix"].index_origin == "loaded"
    assert again.bank_info("ix").index == info.index
    assert _answers(again, "ix", q) == before
    files = _saved_files(tmp_path)
    again.close()  # nothing changed: nothing rewritten
    assert _saved_files(tmp_path) == files


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_writes_after_the_save_then_a_crash_force_a_rebuild(
    tmp_path, kind: str, count_rebuilds
) -> None:
    engine = Engine.open(tmp_path)
    xi = _indexed_bank(engine, kind)
    engine.close()
    running = Engine.open(tmp_path)
    assert running._banks["ix"].index_origin == "loaded"
    running.upsert("ix", [[1.0] + [0.0] * 15], ids=["axis"])
    running.delete_memories("ix", ["m7"])
    q = np.concatenate([xi[:40:4], np.eye(16, dtype=np.float32)[:1]])
    expected = [[m.id for m in r.matches[:1]] for r in running.query("ix", q, top_k=3).results]
    running.storage.close()  # a crash: Engine.close (which saves the index) never runs
    count_rebuilds.clear()
    after = Engine.open(tmp_path)
    assert after._banks["ix"].index_origin == "built" and count_rebuilds == [3000]
    res = after.query("ix", q, top_k=3)
    assert [[m.id for m in r.matches[:1]] for r in res.results] == expected
    assert all(r.prefiltered for r in res.results) and expected[-1] == ["axis"]
    assert all("m7" not in [m.id for m in r.matches] for r in res.results)
    # The rebuilt index was saved at once: a second crash costs no second rebuild.
    after.storage.close()
    count_rebuilds.clear()
    third = Engine.open(tmp_path)
    assert count_rebuilds == [] and third._banks["ix"].index_origin == "loaded"
    third.close()


@pytest.mark.parametrize("how", ["garbage index", "truncated index", "garbage manifest"])
def test_damaged_saved_index_is_rebuilt_with_a_warning(tmp_path, how: str, caplog) -> None:
    engine = Engine.open(tmp_path)
    xi = _indexed_bank(engine, "ivf")
    q = xi[::100] + 0.1
    before = _answers(engine, "ix", q)
    engine.close()
    index_dir = tmp_path / "index"
    manifest = index_dir / "ix.json"
    data = index_dir / next(n for n in _saved_files(tmp_path) if n.endswith(".faiss"))
    if how == "garbage index":
        data.write_bytes(b"\x00garbage" * 1000)
    elif how == "truncated index":
        data.write_bytes(data.read_bytes()[:-4096])
    else:
        manifest.write_bytes(b"\x00{")
    with caplog.at_level("WARNING", logger="lam.engine"):
        again = Engine.open(tmp_path)
    assert again._banks["ix"].index_origin == "built"
    assert any("saved index not used" in r.getMessage() for r in caplog.records)
    # Trained on the same vectors in the same order: the very same index as before.
    assert _answers(again, "ix", q) == before
    again.close()


def test_prefilter_config_change_invalidates_the_saved_index(tmp_path, count_rebuilds) -> None:
    engine = Engine.open(tmp_path)
    _indexed_bank(engine, "ivf")
    engine.close()
    running = Engine.open(tmp_path)
    running.update_bank("ix", beta=4.0)  # not a prefilter change: the index stays valid
    assert _saved_files(tmp_path)
    new_pf = PrefilterConfig(kind="ivf", k=64, min_size=1, tolerance=1.0, nprobe=8)
    running.update_bank("ix", prefilter=new_pf)
    assert _saved_files(tmp_path) == []  # built for the old config: removed at once
    running.storage.close()  # crash
    count_rebuilds.clear()
    after = Engine.open(tmp_path)
    assert after._banks["ix"].index_origin == "built" and count_rebuilds == [3000]
    assert after.bank_info("ix").index["nprobe"] == 8 and after.bank_info("ix").config.beta == 4.0
    after.update_bank("ix", beta=2.0)
    after.close()  # a beta change leaves the index as it is: only its manifest is rewritten
    count_rebuilds.clear()
    last = Engine.open(tmp_path)
    assert count_rebuilds == [] and last._banks["ix"].index_origin == "loaded"
    last.close()


def test_deleting_or_replacing_a_bank_removes_its_saved_index(tmp_path, count_rebuilds) -> None:
    engine = Engine.open(tmp_path)
    _indexed_bank(engine, "hnsw", name="gone")
    _indexed_bank(engine, "ivf", name="kept")
    buf = io.BytesIO()
    engine.export_snapshot("kept", buf)
    engine.close()
    assert {n.split(".")[0] for n in _saved_files(tmp_path)} == {"gone", "kept"}
    engine = Engine.open(tmp_path)
    engine.delete_bank("gone")
    assert {n.split(".")[0] for n in _saved_files(tmp_path)} == {"kept"}
    buf.seek(0)
    engine.import_snapshot("kept", buf, replace=True)
    assert _saved_files(tmp_path) == []
    engine.storage.close()  # crash
    (tmp_path / "index" / "stray.json.tmp-1234").write_bytes(b"left by a crash")
    count_rebuilds.clear()
    engine = Engine.open(tmp_path)
    assert engine._banks["kept"].index_origin == "built" and count_rebuilds == [3000]
    assert all(n.startswith("kept.") for n in _saved_files(tmp_path))  # stray file pruned
    engine.close()


def test_flat_and_in_memory_indexes_are_not_saved(tmp_path) -> None:
    engine = Engine.open(tmp_path)
    _indexed_bank(engine, "flat")
    engine.close()
    assert _saved_files(tmp_path) == []
    memory = Engine.open(None)
    _indexed_bank(memory, "ivf")
    assert memory.index_dir is None
    memory.close()


def test_version_1_store_opens_and_then_saves_its_index(tmp_path, count_rebuilds) -> None:
    """A data dir written before write generations existed migrates and gets a saved index."""
    import sqlite3

    engine = Engine.open(tmp_path)
    xi = _indexed_bank(engine, "ivf")
    q = xi[::300] + 0.1
    before = _answers(engine, "ix", q)
    engine.close()
    (tmp_path / "index" / "ix.json").unlink()
    conn = sqlite3.connect(tmp_path / "lam.sqlite3", isolation_level=None)
    conn.execute("DELETE FROM meta WHERE key = 'generation'")
    conn.execute("ALTER TABLE banks DROP COLUMN generation")  # back to the version-1 layout
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    count_rebuilds.clear()
    engine = Engine.open(tmp_path)
    assert engine.storage.schema_version == SCHEMA_VERSION and count_rebuilds == [3000]
    assert _answers(engine, "ix", q) == before
    engine.close()
    count_rebuilds.clear()
    engine = Engine.open(tmp_path)
    assert count_rebuilds == [] and engine._banks["ix"].index_origin == "loaded"
    engine.close()


def test_version_2_store_migrates_and_keeps_its_saved_index(tmp_path, count_rebuilds) -> None:
    """Migrating the layout keeps seqs and generations: the saved index stays current."""
    import sqlite3

    engine = Engine.open(tmp_path)
    xi = _indexed_bank(engine, "ivf")
    engine.delete_memories("ix", [f"m{i}" for i in range(0, 3000, 7)])
    q = xi[::300] + 0.1
    before = _answers(engine, "ix", q)
    engine.close()
    conn = sqlite3.connect(tmp_path / "lam.sqlite3", isolation_level=None)
    conn.execute("BEGIN")  # back to the version-2 layout (WITHOUT ROWID)
    conn.execute("ALTER TABLE memories RENAME TO m3")
    conn.execute("DROP INDEX IF EXISTS memories_key")
    conn.execute("DROP INDEX memories_bank_seq")
    conn.execute(
        "CREATE TABLE memories (bank TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL,"
        " vector BLOB NOT NULL, payload TEXT, PRIMARY KEY (bank, seq)) WITHOUT ROWID"
    )
    conn.execute("CREATE UNIQUE INDEX memories_bank_id ON memories (bank, id)")
    conn.execute("INSERT INTO memories SELECT bank, seq, id, vector, payload FROM m3")
    conn.execute("DROP TABLE m3")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.execute("COMMIT")
    conn.close()
    count_rebuilds.clear()
    engine = Engine.open(tmp_path)
    assert engine.storage.migration is not None and engine.storage.migration["from_version"] == 2
    assert count_rebuilds == [] and engine._banks["ix"].index_origin == "loaded"
    assert _answers(engine, "ix", q) == before
    engine.close()


def test_index_is_not_saved_into_a_nearly_full_data_dir(tmp_path, monkeypatch, caplog) -> None:
    import shutil

    import lam_engine.store.space as space_module

    engine = Engine.open(tmp_path)
    _indexed_bank(engine, "ivf")
    real = shutil.disk_usage
    usage = real(tmp_path)
    almost_full = type(usage)(usage.total, usage.total - (100 << 20), 100 << 20)
    monkeypatch.setattr(space_module.shutil, "disk_usage", lambda path: almost_full)
    with caplog.at_level("WARNING", logger="lam.engine"):
        engine.close()
    assert _saved_files(tmp_path) == [] and "nearly full" in caplog.text
    monkeypatch.setattr(space_module.shutil, "disk_usage", real)
    engine = Engine.open(tmp_path)  # rebuilt, and saved now that there is room
    assert engine._banks["ix"].index_origin == "built" and _saved_files(tmp_path)
    engine.upsert("ix", np.ones((1, 16), np.float32), ids=["one-more"])
    monkeypatch.setattr(space_module.shutil, "disk_usage", lambda path: almost_full)
    engine.close()  # changed since its save, no room for the new one: the stale one goes too
    assert _saved_files(tmp_path) == []


# ---- convexity of /dynamics (issue 17) ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params", "convex"),
    [
        ("A", {"F": "power", "power": 3}, False),  # F″ = 6h < 0 for h < 0
        ("C", {"F": "power", "power": 5}, False),
        ("C", {"F": "power", "power": 3}, False),
        ("A", {"F": "power", "power": 2}, True),
        ("A", {"F": "power", "power": 1}, True),
        ("A", {"F": "rectified_power", "power": 3}, True),
        ("C", {"F": "exp"}, True),
        ("C", {}, True),  # the default F: rectified cubic
        ("B", {}, True),
    ],
)
def test_dynamics_refuses_a_nonconvex_lagrangian_but_queries_work(
    engine: Engine, model: str, params: dict, convex: bool
) -> None:
    engine.create_bank("c", BankConfig(dim=4, model=model, model_params=params))  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    engine.upsert("c", rng.standard_normal((6, 4)).astype(np.float32))
    cue = rng.standard_normal(4).tolist()
    assert len(engine.query("c", [cue], top_k=2).results[0].matches) == 2
    if convex:
        out = engine.dynamics("c", cue, t_max=0.1)
        assert np.all(np.diff(out.energy) <= 1e-9 * (1 + np.abs(out.energy[:-1])))
        return
    with pytest.raises(NonconvexLagrangianError) as info:
        engine.dynamics("c", cue, t_max=0.1)
    err = info.value
    assert err.code == "nonconvex_lagrangian" and err.status == 422
    assert "power" in err.message and "rectified_power" in err.message
