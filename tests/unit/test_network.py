"""Engine-level dynamics, diagnostics and Models A/C retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from lam_engine import BankConfig, Engine, InvalidParameterError
from lam_engine.math.diagnostics import fixed_point_threshold


@pytest.fixture
def engine() -> Engine:
    e = Engine.open(None)
    yield e
    e.close()


def _patterns(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.sign(np.random.default_rng(seed).standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("model", ["A", "B", "C"])
def test_dynamics_energy_never_increases(engine: Engine, model: str) -> None:
    xi = _patterns(12, 16, seed=1)
    engine.create_bank("x", BankConfig(dim=16, model=model, beta=0.5))
    engine.upsert("x", xi)
    cue = xi[0] * 0.3 + 0.05
    out = engine.dynamics("x", cue.tolist(), dt=0.01, t_max=2.0, record_every=5)
    e = np.array(out.energy)
    assert len(out.times) == len(e) >= 2 and out.times[0] == 0.0
    assert np.all(np.diff(e) <= 1e-6 * np.maximum(1.0, np.abs(e[:-1])))
    assert len(out.hidden_top) == 5
    assert out.hidden_top == sorted(out.hidden_top, key=lambda h: -h["value"])


def test_dynamics_hidden_follows_memory_order(engine: Engine) -> None:
    xi = _patterns(6, 8, seed=2)
    engine.create_bank("x", BankConfig(dim=8, beta=1.0))
    engine.upsert("x", xi, ids=[f"m{i}" for i in range(6)])
    hidden = np.full(6, -5.0)
    hidden[4] = 5.0  # hidden unit of memory m4 starts far ahead
    out = engine.dynamics("x", np.zeros(8).tolist(), hidden=hidden.tolist(), t_max=0.01, dt=0.01)
    assert out.hidden_top[0]["id"] == "m4"
    with pytest.raises(Exception) as err:
        engine.dynamics("x", np.zeros(8).tolist(), hidden=[0.0] * 5)
    assert getattr(err.value, "code", "") == "dimension_mismatch"
    with pytest.raises(InvalidParameterError):
        engine.dynamics("x", np.zeros(8).tolist(), t_max=1e9, dt=1e-3)


def test_diagnostics_against_brute_force(engine: Engine) -> None:
    xi = _patterns(40, 32, seed=3)
    engine.create_bank("x", BankConfig(dim=32, beta=2.0))
    ids = [f"m{i}" for i in range(40)]
    engine.upsert("x", xi, ids=ids)
    g = xi.astype(np.float64) @ xi.T.astype(np.float64)
    delta = np.diag(g) - np.where(np.eye(40, dtype=bool), -np.inf, g).max(axis=1)
    m = np.linalg.norm(xi, axis=1).max()
    for beta in (0.05, 2.0, 50.0):
        rep = engine.diagnostics("x", beta=beta, limit=1000)
        thr = fixed_point_threshold(40, beta, m)
        assert rep.threshold == pytest.approx(thr)
        assert rep.max_norm == pytest.approx(m)
        assert rep.failing_total == 40 - rep.n_meeting
        margins = [f["margin"] for f in rep.failing]
        assert margins == sorted(margins)
        failing_ids = {f["id"] for f in rep.failing}
        for i in range(40):
            if ids[i] not in failing_ids:
                assert delta[i] >= thr - 1e-9
    rep = engine.diagnostics("x", beta=rep.beta_min * 1.0000001)
    assert rep.n_meeting == rep.n_separable
    page = engine.diagnostics("x", beta=0.05, limit=3, offset=0)
    assert len(page.failing) == min(3, page.failing_total)


@pytest.mark.parametrize("model", ["A", "C"])
def test_models_a_and_c_complete_corrupted_patterns(engine: Engine, model: str) -> None:
    d, n = 64, 10
    xi = _patterns(n, d, seed=4)
    params = {"F": "exp", "power": 1} if model == "A" else {"F": "rectified_power", "power": 3}
    engine.create_bank("x", BankConfig(dim=d, model=model, model_params=params))
    engine.upsert("x", xi, ids=[f"m{i}" for i in range(n)])
    rng = np.random.default_rng(5)
    cues = xi.copy()
    flip = rng.random(cues.shape) < 0.15
    cues[flip] *= -1
    res = engine.query("x", cues, steps=5)
    for i, r in enumerate(res.results):
        assert r.matches[0].id == f"m{i}"
        direction = np.sign(r.state)
        assert np.array_equal(direction, xi[i])
    e = engine.energy("x", np.stack([r.state for r in res.results])).energies
    np.testing.assert_allclose(e, [r.energy for r in res.results], rtol=1e-5)
