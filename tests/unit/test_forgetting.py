"""Forgetting (API.md "Forgetting"): strengths as a prior in Model B, their half-life,
reinforce, lifetimes (invisible from their instant to every read, reaped, never
resurrected), schema 5 and snapshots. The clock is a ManualClock: fast and exact."""

from __future__ import annotations

import io
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine import BankConfig, Engine, PrefilterConfig
from lam_engine.clock import ManualClock
from lam_engine.errors import InvalidParameterError, MemoryNotFoundError
from lam_engine.math import strengths as sm
from lam_engine.store import SCHEMA_VERSION, Storage
from tests import reference as ref

T0 = 1.8e9
BETA = 3.0


def _engine(path: Any = None) -> tuple[Engine, ManualClock]:
    clock = ManualClock(T0)
    return Engine.open(path, clock=clock), clock


def _xi(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


# ---- strengths: the formulas against the numpy reference -----------------------------------
@pytest.mark.parametrize("chunk_bytes", [64 << 20, 4096])
def test_query_and_energy_with_strengths_match_the_reference(chunk_bytes: int) -> None:
    clock = ManualClock(T0)
    engine = Engine.open(None, clock=clock, chunk_bytes=chunk_bytes)
    xi = _xi(700, 8)
    s = np.random.default_rng(1).uniform(0.05, 20.0, size=700)
    engine.create_bank("b", BankConfig(dim=8, beta=BETA))
    engine.upsert("b", xi, ids=[f"m{i}" for i in range(700)], strengths=s.tolist())
    q = _xi(5, 8, seed=2)
    for steps in (0, 1, 3):
        res = engine.query("b", q, steps=steps, tol=0.0, top_k=4)
        state, _, _ = ref.retrieve(xi, q, BETA, steps=steps, tol=0.0, bias=np.log(s))
        w = ref.weights(xi, state, BETA, np.log(s))
        for i, r in enumerate(res.results):
            np.testing.assert_allclose(r.state, state[i], atol=1e-4)
            assert r.energy == pytest.approx(ref.energy(xi, state[i], BETA, np.log(s))[0], abs=1e-4)
            top = np.argsort(-w[i])[:4]
            assert [m.id for m in r.matches] == [f"m{j}" for j in top]
            np.testing.assert_allclose([m.weight for m in r.matches], w[i, top], rtol=1e-4)
    e = engine.energy("b", q, constants=True, gradient=True)
    np.testing.assert_allclose(
        e.energies, ref.energy(xi, q, BETA, np.log(s), constants=True), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(e.gradients, ref.gradient(xi, q, BETA, np.log(s)), atol=1e-4)


def test_prefiltered_query_with_strengths_keeps_a_true_certificate() -> None:
    engine, _ = _engine()
    xi = _xi(3000, 16)
    s = np.random.default_rng(3).uniform(0.1, 10.0, size=3000)
    pf = PrefilterConfig(kind="flat", k=64, min_size=0, tolerance=1.0)
    engine.create_bank("b", BankConfig(dim=16, beta=2.0, prefilter=pf))
    engine.upsert("b", xi, ids=[f"m{i}" for i in range(3000)], strengths=s.tolist())
    q = xi[:6] + 0.05
    res = engine.query("b", q, steps=0, top_k=3)
    w = ref.weights(xi, q, 2.0, np.log(s))
    for i, r in enumerate(res.results):
        assert r.prefiltered
        cand = np.argsort(-(q[i] @ xi.T))[:64]  # flat: the true top-64 by score
        missed = 1.0 - w[i, cand].sum()
        assert missed <= r.missed_mass_bound + 1e-9
        assert r.matches[0].id == f"m{int(np.argmax(w[i]))}"


def test_all_strengths_one_is_todays_model_b_bit_for_bit() -> None:
    xi, q = _xi(500, 8), _xi(4, 8, seed=5)
    answers = []
    for strengths in (None, [1.0] * 500):
        engine, _ = _engine()
        engine.create_bank("b", BankConfig(dim=8, beta=BETA))
        engine.upsert("b", xi, ids=[f"m{i}" for i in range(500)], strengths=strengths)
        assert engine._banks["b"].bank.bias is None  # the fast path: no bias at all
        r = engine.query("b", q, steps=2, top_k=5)
        e = engine.energy("b", q, constants=True).energies
        answers.append(
            ([x.state.tobytes() for x in r.results], [x.energy for x in r.results], e.tobytes())
        )
    assert answers[0] == answers[1]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    beta=st.floats(0.1, 8.0),
    log_s=st.lists(st.floats(-6.0, 6.0), min_size=6, max_size=6),
)
def test_energy_never_increases_and_is_nonnegative_with_random_strengths(
    seed: int, beta: float, log_s: list[float]
) -> None:
    rng = np.random.default_rng(seed)
    xi = rng.normal(size=(6, 4))
    b = np.asarray(log_s)
    v = rng.normal(size=(1, 4)) * 2
    e_prev = ref.energy(xi, v, beta, b)[0]
    for _ in range(6):
        v = ref.step(xi, v, beta, b)
        e = ref.energy(xi, v, beta, b)[0]
        assert e <= e_prev + 1e-9  # the CCCP step (docs/math.md)
        assert ref.energy(xi, v, beta, b, constants=True)[0] >= -1e-9
        e_prev = e


def test_strength_formulas_match_the_reference() -> None:
    s, t_mu = np.array([1.0, 2.0, 0.5]), np.array([T0, T0 + 10, T0 - 100])
    for h in (None, 7.5):
        np.testing.assert_allclose(
            sm.strength_now(s, t_mu, T0 + 50, h), ref.strength_now(s, t_mu, T0 + 50, h)
        )
        # the split bias + offset is log s_now, to float64 precision at unix-time scale
        got = sm.log_prior(s, t_mu, T0 + 20, h) + sm.prior_offset(T0 + 50, T0 + 20, h)
        np.testing.assert_allclose(got, np.log(ref.strength_now(s, t_mu, T0 + 50, h)), atol=1e-9)


def test_half_life_fades_and_reinforce_restores() -> None:
    engine, clock = _engine()
    xi = np.eye(3, dtype=np.float32)
    engine.create_bank("b", BankConfig(dim=3, beta=BETA, half_life_s=10.0))
    engine.upsert("b", xi, ids=["a", "b", "c"], strengths=[1.0, 1.0, 4.0])
    clock.advance(20.0)
    got = engine.get_memory("b", "c").to_dict()
    assert got["strength"] == 4.0 and got["strength_now"] == pytest.approx(1.0)
    assert engine.reinforce("b", ["a", "nope"], strength=2.0) == 1  # unknown ids: not counted
    clock.advance(10.0)
    s_now = np.array([2.0 * 0.5, 0.125, 4.0 * 0.125])
    for key, want in zip("abc", s_now, strict=True):
        assert engine.get_memory("b", key).to_dict()["strength_now"] == pytest.approx(want)
    q = np.array([[0.2, 0.3, 0.1]], dtype=np.float32)
    e = engine.energy("b", q, constants=True).energies  # E uses the strengths in force
    np.testing.assert_allclose(e, ref.energy(xi, q, BETA, np.log(s_now), constants=True), rtol=1e-5)
    w = {m.id: m.weight for m in engine.query("b", q, steps=0, top_k=3).results[0].matches}
    np.testing.assert_allclose(
        [w[k] for k in "abc"], ref.weights(xi, q, BETA, np.log(s_now))[0], rtol=1e-5
    )
    # PATCH: the new half-life applies from each t_μ (docs/forgetting.md)
    engine.update_bank("b", half_life_s=None)
    assert engine.get_memory("b", "c").to_dict()["strength_now"] == 4.0


def test_dynamics_hidden_softmax_carries_the_strengths() -> None:
    engine, _ = _engine()
    xi = np.eye(3, dtype=np.float32)
    engine.create_bank("b", BankConfig(dim=3, beta=1.0))
    engine.upsert("b", xi, ids=["a", "b", "c"], strengths=[1.0, 50.0, 1.0])
    out = engine.dynamics("b", [0.1, 0.1, 0.1], t_max=0.01, dt=0.01, top_k=1)
    assert out.hidden_top[0]["id"] == "b"
    assert all(b <= a + 1e-9 for a, b in zip(out.energy, out.energy[1:], strict=False))


# ---- lifetimes ------------------------------------------------------------------------------
def _reads(engine: Engine) -> dict[str, Any]:
    q = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    flt = {"must": [{"key": "t", "match": {"value": "x"}}]}
    records, _ = engine.scroll("b", 10)
    return {
        "query": {m.id for m in engine.query("b", q, steps=0, top_k=3).results[0].matches},
        "filtered": {
            m.id for m in engine.query("b", q, steps=0, top_k=3, filter=flt).results[0].matches
        },
        "energy": float(engine.energy("b", q, constants=True).energies[0]),
        "dynamics": {u["id"] for u in engine.dynamics("b", q[0], t_max=0.02, top_k=3).hidden_top},
        "diagnostics": engine.diagnostics("b").count,
        "scroll": {r.id for r in records},
        "count": engine.count("b"),
        "count_filtered": engine.count("b", {"must": [{"key": "t", "match": {"value": "x"}}]}),
        "bank_count": engine.bank_info("b").count,
    }


def test_a_lifetime_ends_for_every_read_at_its_instant_and_is_reaped(tmp_path: Path) -> None:
    engine, clock = _engine(tmp_path)
    xi = np.eye(3, dtype=np.float32)
    engine.create_bank("b", BankConfig(dim=3, beta=BETA, payload_index={"t": "keyword"}))
    engine.upsert("b", xi, ids=["a", "b", "c"], payloads=[{"t": "x"}] * 3, ttl_s=[None, 1.0, None])
    before = _reads(engine)
    assert "b" in before["query"] and "b" in before["filtered"] and before["count"] == 3
    assert engine.get_memory("b", "b").to_dict()["expires_at"] == "2027-01-15T08:00:01.000Z"
    clock.advance(1.0)  # the instant it expires: gone for every read, before any reaping
    after = _reads(engine)
    for key in ("query", "filtered", "dynamics", "scroll"):
        assert after[key] == before[key] - {"b"}, key
    for key in ("diagnostics", "count", "count_filtered", "bank_count"):
        assert after[key] == before[key] - 1, key
    assert after["energy"] == pytest.approx(
        ref.energy(xi[[0, 2]], np.array([[0, 1.0, 0]]), BETA, constants=True)[0]
    )
    with pytest.raises(MemoryNotFoundError):
        engine.get_memory("b", "b")
    assert engine.reinforce("b", ["b"]) == 0
    engine.reap()
    assert "b" not in engine._banks["b"].bank
    with sqlite3.connect(tmp_path / "lam.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM memories").fetchone()[0] == 2
    engine.close()


def test_a_restart_never_resurrects_and_the_disk_space_is_reclaimed(tmp_path: Path) -> None:
    engine, clock = _engine(tmp_path)
    n, d = 4000, 64
    engine.create_bank("b", BankConfig(dim=d))
    engine.upsert("b", _xi(n, d), ids=[f"m{i}" for i in range(n)], ttl_s=[5.0] * n)
    engine.upsert("b", _xi(10, d, 1), ids=[f"k{i}" for i in range(10)])
    engine.close()
    db = tmp_path / "lam.sqlite3"

    def live_bytes() -> int:
        with sqlite3.connect(db) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    used = live_bytes()
    clock.advance(6.0)  # expired while the service was down
    engine = Engine.open(tmp_path, clock=clock)
    assert engine.count("b") == 10 and engine.bank_info("b").count == 10
    engine.close()
    freed = used - live_bytes()
    assert freed >= 0.8 * n * d * 4  # the rows' vectors are gone from the file's live pages
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM memories").fetchone()[0] == 10


def test_default_ttl_applies_to_memories_stored_without_one() -> None:
    engine, clock = _engine()
    engine.create_bank("b", BankConfig(dim=2, default_ttl_s=100.0))
    engine.upsert("b", np.eye(2), ids=["x", "y"], ttl_s=[None, 500.0])
    clock.advance(100.0)
    assert [r.id for r in engine.scroll("b")[0]] == ["y"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("strengths", -1.0), ("strengths", 0.0), ("strengths", math.nan), ("strengths", "2"),
        ("strengths", math.inf), ("ttl_s", 0.0), ("ttl_s", -3.0), ("ttl_s", math.nan),
        ("expires_at", "2020-01-01T00:00:00Z"), ("expires_at", "tomorrow"),
        ("expires_at", "2030-01-01T00:00:00"),
    ],
)  # fmt: skip
def test_bad_forgetting_fields_are_refused_and_change_nothing(field: str, value: Any) -> None:
    engine, _ = _engine()
    engine.create_bank("b", BankConfig(dim=2))
    engine.upsert("b", np.eye(2), ids=["x", "y"])
    with pytest.raises(InvalidParameterError):
        engine.upsert("b", np.ones((2, 2)), ids=["x", "z"], **{field: [None, value]})
    assert engine.count("b") == 2 and engine.get_memory("b", "x").vector.tolist() == [1.0, 0.0]
    with pytest.raises(InvalidParameterError):
        engine.upsert("b", np.ones((1, 2)), ttl_s=[5.0], expires_at=["2030-01-01T00:00:00Z"])
    with pytest.raises(InvalidParameterError):
        engine.reinforce("b", ["x"], strength=-1.0)
    assert engine.get_memory("b", "x").to_dict()["reinforced_at"] is None


# ---- store and snapshots ----------------------------------------------------------------------
def test_snapshot_round_trips_the_forgetting_fields_and_old_snapshots_import() -> None:
    engine, clock = _engine()
    engine.create_bank("b", BankConfig(dim=2, half_life_s=50.0))
    engine.upsert("b", np.eye(2), ids=["x", "y"], strengths=[3.0, None], ttl_s=[None, 99.0])
    clock.advance(5.0)
    engine.reinforce("b", ["x"])
    buf = io.BytesIO()
    engine.export_snapshot("b", buf)
    buf.seek(0)
    engine.import_snapshot("c", buf)
    for mid in ("x", "y"):
        assert engine.get_memory("c", mid).to_dict() == engine.get_memory("b", mid).to_dict()
    from lam_engine.store import snapshot as snap

    old = io.BytesIO()
    snap.write_snapshot(old, name="o", config=BankConfig(dim=2).to_dict(), created_at="x",
                        ids=["p"], vectors=np.eye(2)[:1], payloads=[None])  # fmt: skip
    old.seek(0)
    engine.import_snapshot("o", old)
    assert engine.get_memory("o", "p").to_dict()["strength"] == 1.0


def test_version_4_store_migrates_to_6_keeping_everything(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    s = Storage(db)
    s.create_bank("b", {"dim": 2}, "2026-01-01T00:00:00.000Z")
    s.upsert("b", ["x", "y"], np.eye(2, dtype=np.float32), [{"a": 1}, None])
    s.close()
    with sqlite3.connect(db) as conn:  # back to the version-4 layout
        conn.execute("DROP INDEX memories_expires")
        for col in ("strength", "stored_at", "reinforced_at", "expires_at"):
            conn.execute(f"ALTER TABLE memories DROP COLUMN {col}")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    s = Storage(db)
    assert s.schema_version == SCHEMA_VERSION == 6 and s.migration["from_version"] == 4
    loaded = s.load("b")
    assert loaded.ids == ["x", "y"] and loaded.payloads == [{"a": 1}, None]
    np.testing.assert_array_equal(loaded.vectors, np.eye(2))
    strength, stored, reinforced, expires = loaded.times
    assert (
        strength.tolist() == [1.0, 1.0] and np.isinf(expires).all() and np.isnan(reinforced).all()
    )
    assert (stored > 1.7e9).all()  # the migration's time stands for "stored before version 5"
    s.close()
