"""`steps: 0` (API.md, "Scoring at the cue") in the engine, against tests/reference.py.

One pass at the prepared cue, no update: the state is the cue as the first step sees it,
steps 0, not converged, the energy and the matches at that cue; `energy()` of the returned
state equals the reported energy. Model B's dense path makes exactly one pass over Ξ and
skips Ξᵀ p.
"""

from __future__ import annotations

import numpy as np
import pytest

from lam_engine import BankConfig, Engine, PrefilterConfig
from lam_engine import retrieval as retrieval_mod
from tests import reference as ref


@pytest.fixture
def engine() -> Engine:
    e = Engine.open(None)
    yield e
    e.close()


def _bank(engine: Engine, n: int, d: int, seed: int, **cfg) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n, d)).astype(np.float32)
    engine.create_bank("b", BankConfig(dim=d, **cfg))
    ids = [f"m{i}" for i in range(n)]
    engine.upsert("b", xi, ids=ids)
    if cfg.get("normalize"):
        xi = ref.normalize(xi).astype(np.float32)
    return xi, ids


def _check_at_cue(engine, res, xi, ids, cue, beta, top_k) -> None:
    """Every result against the oracle at the prepared cue `cue` (B, d)."""
    w = ref.weights(xi, cue, beta)  # (B, N)
    e = ref.energy(xi, cue, beta)
    for i, r in enumerate(res.results):
        assert r.steps == 0 and r.converged is False
        np.testing.assert_allclose(r.state, cue[i], rtol=1e-6, atol=1e-6)
        assert r.energy == pytest.approx(e[i], rel=1e-5, abs=1e-5)
        order = np.argsort(-w[i], kind="stable")[:top_k]
        assert len(r.matches) == min(top_k, len(ids))
        assert [m.weight for m in r.matches] == pytest.approx(w[i][order], abs=1e-5)
        for m in r.matches:
            j = ids.index(m.id)
            assert m.weight == pytest.approx(w[i, j], abs=1e-5)
            assert m.score == pytest.approx(float(xi[j].astype(np.float64) @ cue[i]), abs=1e-5)
        again = engine.energy("b", [r.state], beta=beta).energies[0]
        assert again == pytest.approx(r.energy, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_steps_zero_scores_at_the_cue(engine: Engine, normalize: bool, masked: bool) -> None:
    xi, ids = _bank(engine, n=300, d=12, seed=1, normalize=normalize, beta=3.0)
    rng = np.random.default_rng(2)
    q = rng.standard_normal((5, 12)).astype(np.float32)
    mask = rng.random((5, 12)) < 0.6 if masked else None
    res = engine.query("b", q, mask=mask, steps=0, top_k=7)
    cue = q.astype(np.float64) if mask is None else np.where(mask, q, 0.0)
    if normalize:
        cue = ref.normalize(cue)
    _check_at_cue(engine, res, xi, ids, cue, 3.0, 7)
    assert not res.prefiltered


def test_steps_zero_is_one_pass_without_the_second_gemm(engine, monkeypatch) -> None:
    _bank(engine, n=200, d=8, seed=3)
    calls: list[dict] = []
    real = retrieval_mod.model_b_pass

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(retrieval_mod, "model_b_pass", counting)
    engine.query("b", np.ones((2, 8), np.float32), steps=0, top_k=3)
    assert len(calls) == 1 and calls[0]["need_out"] is False and calls[0]["top_k"] == 3


def test_steps_zero_with_tombstones(engine: Engine) -> None:
    xi, ids = _bank(engine, n=120, d=6, seed=4, beta=2.0)
    gone = ids[::3]
    engine.delete_memories("b", gone)
    keep = [i for i, m in enumerate(ids) if m not in gone]
    q = np.random.default_rng(5).standard_normal((3, 6)).astype(np.float32)
    res = engine.query("b", q, steps=0, top_k=4)
    _check_at_cue(engine, res, xi[keep], [ids[i] for i in keep], q.astype(np.float64), 2.0, 4)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_steps_zero_with_the_prefilter(engine: Engine, kind: str) -> None:
    rng = np.random.default_rng(6)
    n, d = 3000, 32
    xi = ref.normalize(rng.standard_normal((n, d))).astype(np.float32)
    pf = PrefilterConfig(kind=kind, k=64, min_size=1, tolerance=1e-3)
    engine.create_bank("b", BankConfig(dim=d, normalize=True, beta=32.0, prefilter=pf))
    ids = [f"m{i}" for i in range(n)]
    engine.upsert("b", xi, ids=ids)
    q = xi[:6] + 0.1 * rng.standard_normal((6, d)).astype(np.float32)
    cue = ref.normalize(q.astype(np.float64))
    pre = engine.query("b", q, steps=0, top_k=5)
    exact = engine.query("b", q, steps=0, top_k=5, exact=True)
    _check_at_cue(engine, exact, xi, ids, cue, 32.0, 5)
    assert pre.prefiltered and any(r.prefiltered for r in pre.results)
    w = ref.weights(xi, cue, 32.0)
    for i, (a, b) in enumerate(zip(pre.results, exact.results, strict=True)):
        assert a.steps == 0 and a.converged is False
        np.testing.assert_allclose(a.state, b.state, atol=1e-6)
        assert [m.id for m in a.matches] == [m.id for m in b.matches]
        eps = a.missed_mass_bound
        assert eps is not None and (eps <= 1e-3 or not a.prefiltered)
        # Over candidates the softmax is renormalized: each weight within ε of the exact one.
        for m in a.matches:
            assert abs(m.weight - w[i, ids.index(m.id)]) <= eps + 1e-5
        assert a.energy == pytest.approx(b.energy, abs=eps / 32.0 * 2 + 1e-5)
        e_state = engine.energy("b", [a.state], beta=32.0).energies[0]
        assert e_state == pytest.approx(b.energy, abs=1e-5)


@pytest.mark.parametrize("model", ["A", "C"])
def test_steps_zero_models_a_and_c(engine: Engine, model: str) -> None:
    rng = np.random.default_rng(7)
    d = 10
    xi = np.sign(rng.standard_normal((40, d))).astype(np.float32)
    engine.create_bank("b", BankConfig(dim=d, model=model, beta=1.0))
    engine.upsert("b", xi)
    q = rng.standard_normal((3, d)).astype(np.float32)
    res = engine.query("b", q, steps=0, top_k=3)
    # Model A's first step sees the cue's signs; Model C the cue itself.
    cue = np.where(q >= 0, 1.0, -1.0) if model == "A" else q.astype(np.float64)
    for i, r in enumerate(res.results):
        assert r.steps == 0 and r.converged is False
        np.testing.assert_allclose(r.state, cue[i], atol=1e-6)
        assert r.energy == pytest.approx(engine.energy("b", [r.state]).energies[0], abs=1e-6)
        assert len(r.matches) == 3
        for m in r.matches:
            j = int(np.flatnonzero((xi == engine.get_memory("b", m.id).vector).all(1))[0])
            assert m.score == pytest.approx(float(xi[j] @ cue[i]), abs=1e-5)
