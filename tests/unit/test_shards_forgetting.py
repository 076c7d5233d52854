"""Forgetting on in-process sharded banks (API.md "Forgetting", "Sharded banks").

Each shard keeps its rows' strengths, times and lifetimes; the bias is a per-row log-prior,
so the shards' partials merge unchanged. Property test: a K-shard bank with random
strengths, a half-life and lifetimes (ManualClock, time moving on, some memories
reinforced) answers as the one-shard bank and as tests/reference.py with the strengths in
force: states, energies (with constants), weights and top-k, for K = 1..4 and steps
0/1/3. Then expiry and the reaper, reinforce, a new half-life, and a restart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine import BankConfig, Engine
from lam_engine.clock import ManualClock
from lam_engine.errors import MemoryNotFoundError
from tests import reference as ref

T0 = 1.8e9
BETA = 4.0


def _xi(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) / math.sqrt(d)).astype(np.float32)


def _fill(
    engine: Engine, name: str, xi: np.ndarray, s: list[float], ttl: list[Any], **cfg: Any
) -> None:
    engine.create_bank(name, BankConfig(dim=xi.shape[1], beta=BETA, **cfg))
    ids = [f"m{i}" for i in range(len(xi))]
    half = len(xi) // 2  # two batches, stored at different times
    engine.upsert(name, xi[:half], ids=ids[:half], strengths=s[:half], ttl_s=ttl[:half])
    engine.clock.advance(7.0)  # type: ignore[attr-defined]
    engine.upsert(name, xi[half:], ids=ids[half:], strengths=s[half:], ttl_s=ttl[half:])


def _forgetting(engine: Engine, name: str, ids: list[str]) -> dict[str, Any]:
    return {i: engine.get_memory(name, i).forgetting for i in ids}


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=4, max_value=30),
    d=st.integers(min_value=2, max_value=6),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    shards=st.integers(min_value=1, max_value=4),
    steps=st.sampled_from([0, 1, 3]),
    half_life=st.sampled_from([None, 5.0, 60.0]),
    later=st.floats(min_value=0.0, max_value=30.0),
)
def test_a_sharded_bank_with_forgetting_answers_as_one_shard_and_the_reference(
    n: int,
    d: int,
    seed: int,
    shards: int,
    steps: int,
    half_life: float | None,
    later: float,
) -> None:
    rng = np.random.default_rng(seed)
    xi = _xi(n, d, seed)
    s = [float(x) for x in rng.uniform(0.2, 5.0, n)]
    ttl: list[Any] = [float(t) if rng.random() < 0.4 else None for t in rng.uniform(1, 40, n)]
    clock = ManualClock(T0)
    engine = Engine.open(None, clock=clock)
    try:
        _fill(engine, "one", xi, s, ttl, half_life_s=half_life)
        clock.set(T0)  # the K-shard bank is stored at the same instants
        _fill(engine, "many", xi, s, ttl, half_life_s=half_life, shards=shards)
        ids = [f"m{i}" for i in range(n)]
        again = [i for i in ids if rng.random() < 0.3]
        clock.advance(3.0)
        for name in ("one", "many"):
            engine.reinforce(name, again, strength=2.5 if seed % 2 else None)
        clock.advance(later)
        now = clock.now()
        # What is alive now, with which strength (the oracle's own bookkeeping).
        stored = np.array([T0] * (n // 2) + [T0 + 7.0] * (n - n // 2))
        expires = np.array([stored[i] + ttl[i] if ttl[i] is not None else np.inf for i in range(n)])
        t_mu = np.where([i in again for i in ids], T0 + 10.0, stored)
        strength = np.array([2.5 if (i in again and seed % 2) else s[k] for k, i in enumerate(ids)])
        live = expires > now
        assert engine.count("one") == engine.count("many") == int(live.sum())
        if not live.any():
            return
        xs = xi[live].astype(np.float64)
        bias = np.log(ref.strength_now(strength, t_mu, now, half_life))[live]
        q = (xi[rng.integers(0, n, size=3)] + 0.3 * rng.normal(size=(3, d))).astype(np.float32)
        kw = {"steps": steps, "top_k": 3}
        a = engine.query("one", q, **kw).results
        b = engine.query("many", q, **kw).results
        want, _, _ = ref.retrieve(xs, q, BETA, steps=steps, bias=bias)
        live_ids = np.array(ids)[live]
        for ra, rb, w in zip(a, b, want, strict=True):
            tol = 1e-4 * (1 + np.abs(w).max())
            np.testing.assert_allclose(rb.state, ra.state, atol=tol)
            np.testing.assert_allclose(rb.state, w, atol=tol)
            e_ref = ref.energy(xs, rb.state, BETA, bias)[0]
            assert abs(rb.energy - ra.energy) <= 1e-4 * (1 + abs(ra.energy))
            assert abs(rb.energy - e_ref) <= 1e-4 * (1 + abs(e_ref))
            p = ref.weights(xs, rb.state, BETA, bias)[0]
            top = np.sort(np.log(p))[::-1][: len(rb.matches)]  # top-k by weight
            np.testing.assert_allclose(
                [math.log(m.weight) for m in rb.matches], top, atol=1e-3, rtol=1e-4
            )
            for m in rb.matches:
                j = int(np.flatnonzero(live_ids == m.id)[0])
                assert abs(m.weight - p[j]) <= 1e-4
                assert abs(m.score - float(xs[j] @ rb.state)) <= 1e-4
            assert [m.id for m in rb.matches if m.weight > 1e-3] == [
                m.id for m in ra.matches if m.weight > 1e-3
            ] or np.allclose([m.weight for m in rb.matches], [m.weight for m in ra.matches])
        ea = engine.energy("one", q, constants=True, gradient=True)
        eb = engine.energy("many", q, constants=True, gradient=True)
        e_ref = ref.energy(xs, q, BETA, bias, constants=True)
        np.testing.assert_allclose(eb.energies, ea.energies, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(eb.energies, e_ref, rtol=1e-5, atol=1e-4)
        assert eb.gradients is not None
        np.testing.assert_allclose(eb.gradients, ref.gradient(xs, q, BETA, bias), atol=1e-4)
        # GET and scroll show the same forgetting fields.
        alive = list(live_ids)
        assert _forgetting(engine, "many", alive) == _forgetting(engine, "one", alive)
        pages = [engine.scroll(name, 100, None, with_vectors=False)[0] for name in ("one", "many")]
        assert [(r.id, r.forgetting) for r in pages[1]] == [(r.id, r.forgetting) for r in pages[0]]
    finally:
        engine.close()


@pytest.fixture
def engine_clock() -> Any:
    clock = ManualClock(T0)
    engine = Engine.open(None, clock=clock)
    yield engine, clock
    engine.close()


def test_expiry_and_the_reaper_on_a_sharded_bank(engine_clock: Any) -> None:
    engine, clock = engine_clock
    engine.create_bank("s", BankConfig(dim=4, beta=BETA, shards=3, default_ttl_s=100.0))
    xi = _xi(12, 4, 1)
    ids = [f"m{i}" for i in range(12)]
    engine.upsert("s", xi, ids=ids, ttl_s=[5.0 if i % 4 == 0 else None for i in range(12)])
    assert engine.reap() == pytest.approx(T0 + 5.0)  # the earliest expiry over the shards
    gone = ids[::4]
    clock.advance(5.0)
    # Expired: absent from every read before the reaper runs.
    assert engine.count("s") == engine.bank_info("s").count == 9
    with pytest.raises(MemoryNotFoundError):
        engine.get_memory("s", gone[0])
    scrolled = [r.id for r in engine.scroll("s", 100, None, with_vectors=False)[0]]
    assert scrolled == [i for i in ids if i not in gone]
    res = engine.query("s", xi[::4], steps=0, top_k=12)
    assert not {m.id for r in res.results for m in r.matches} & set(gone)
    assert engine.reinforce("s", [*gone, "m1"]) == 1  # an expired memory is not reinforced
    # The reaper deletes them through the durable path; the rest expire at T0 + 100.
    assert engine.reap() == pytest.approx(T0 + 100.0)
    assert all(i not in engine._banks["s"].bank for i in gone)
    clock.advance(95.0)
    engine.reap()
    assert engine.count("s") == 0


def test_reinforce_and_a_new_half_life_on_a_sharded_bank(engine_clock: Any) -> None:
    engine, clock = engine_clock
    xi = _xi(10, 4, 2)
    ids = [f"m{i}" for i in range(10)]
    for name, k in (("one", 1), ("many", 4)):
        clock.set(T0)
        engine.create_bank(name, BankConfig(dim=4, beta=BETA, shards=k, half_life_s=10.0))
        engine.upsert(name, xi, ids=ids, strengths=[1.0 + i for i in range(10)])
        clock.advance(20.0)
        assert engine.reinforce(name, ["m2", "m7", "nope"], strength=30.0) == 2
        clock.advance(5.0)
        engine.update_bank(name, half_life_s=40.0)
    got = {name: _forgetting(engine, name, ids) for name in ("one", "many")}
    assert got["many"] == got["one"]
    assert got["many"]["m2"]["strength"] == 30.0
    assert got["many"]["m2"]["strength_now"] == pytest.approx(30.0 * 2 ** (-5 / 40))
    assert got["many"]["m3"]["strength_now"] == pytest.approx(4.0 * 2 ** (-25 / 40))
    q = xi[:3]
    a, b = (engine.query(name, q, steps=1, top_k=3).results for name in ("one", "many"))
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_allclose(rb.state, ra.state, atol=1e-5)
        assert [m.id for m in rb.matches] == [m.id for m in ra.matches]
        np.testing.assert_allclose(
            [m.weight for m in rb.matches], [m.weight for m in ra.matches], rtol=1e-4
        )


def test_a_sharded_bank_keeps_its_forgetting_across_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    xi = _xi(16, 4, 3)
    ids = [f"m{i}" for i in range(16)]
    engine = Engine.open(tmp_path, clock=clock)
    engine.create_bank("s", BankConfig(dim=4, beta=BETA, shards=3, half_life_s=50.0))
    engine.upsert(
        "s",
        xi,
        ids=ids,
        strengths=[0.5 + i for i in range(16)],
        ttl_s=[10.0 if i % 5 == 0 else None for i in range(16)],
    )
    clock.advance(2.0)
    engine.reinforce("s", ["m1", "m4"], strength=9.0)
    before = _forgetting(engine, "s", ids)
    res_before = engine.query("s", xi[:4], steps=1, top_k=3)
    engine.close()
    engine = Engine.open(tmp_path, clock=clock)
    try:
        assert _forgetting(engine, "s", ids) == before
        res = engine.query("s", xi[:4], steps=1, top_k=3)
        for ra, rb in zip(res_before.results, res.results, strict=True):
            np.testing.assert_allclose(rb.state, ra.state, atol=1e-6)
            assert [m.id for m in rb.matches] == [m.id for m in ra.matches]
    finally:
        engine.close()
    clock.advance(10.0)  # m0, m5, m10, m15 expire while the server is down
    engine = Engine.open(tmp_path, clock=clock)
    try:
        assert engine.count("s") == 12
        assert all(i not in engine._banks["s"].bank for i in ids[::5])
        m4 = _forgetting(engine, "s", ["m4"])["m4"]
        assert {k: v for k, v in m4.items() if k != "strength_now"} == {
            k: v for k, v in before["m4"].items() if k != "strength_now"
        }
        assert m4["strength_now"] == pytest.approx(9.0 * 2 ** (-10 / 50))
    finally:
        engine.close()


@pytest.mark.parametrize("shards", [1, 3])
def test_the_energy_constant_follows_every_write(engine_clock: Any, shards: int) -> None:
    """E's constant β⁻¹ log Σ s_μ(t) (cached between writes: priors.RowPriors.log_mass) is the
    reference's after a store, reinforce, delete, a new half-life and time passing."""
    engine, clock = engine_clock
    engine.create_bank("b", BankConfig(dim=3, beta=BETA, shards=shards, half_life_s=20.0))
    xi = _xi(9, 3, 4)
    ids = [f"m{i}" for i in range(9)]
    s = np.arange(1.0, 10.0)
    t_mu = np.full(9, T0)
    v = _xi(2, 3, 5)

    def check() -> None:
        live = np.array([i in engine._banks["b"].bank for i in ids])
        bias = np.log(ref.strength_now(s, t_mu, clock.now(), half_life))[live]
        want = ref.energy(xi[live].astype(np.float64), v, BETA, bias, constants=True)
        got = engine.energy("b", v, constants=True).energies
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    half_life: float | None = 20.0
    engine.upsert("b", xi, ids=ids, strengths=list(s))
    check()
    clock.advance(5.0)
    check()
    engine.reinforce("b", ["m2"], strength=50.0)
    s[2], t_mu[2] = 50.0, clock.now()
    check()
    engine.delete_memories("b", ["m4", "m5"])
    check()
    engine.update_bank("b", half_life_s=None)
    half_life = None
    check()
    engine.upsert("b", xi[4:5], ids=["m4"], strengths=[7.0])
    s[4] = 7.0
    check()


def test_a_snapshot_carries_a_sharded_bank_s_forgetting_to_any_shard_count(
    engine_clock: Any,
) -> None:
    import io

    engine, clock = engine_clock
    xi = _xi(11, 3, 6)
    ids = [f"m{i}" for i in range(11)]
    engine.create_bank("s", BankConfig(dim=3, beta=BETA, shards=3, half_life_s=30.0))
    engine.upsert(
        "s", xi, ids=ids, strengths=[1.0 + i for i in range(11)], ttl_s=[None, 99.0] * 5 + [None]
    )
    clock.advance(4.0)
    engine.reinforce("s", ["m3"], strength=8.0)
    want = _forgetting(engine, "s", ids)
    buf = io.BytesIO()
    engine.export_snapshot("s", buf)
    for k in (1, 2, 3):
        buf.seek(0)
        engine.import_snapshot(f"k{k}", buf, shards=k)
        assert _forgetting(engine, f"k{k}", ids) == want
        got = engine.query(f"k{k}", xi[:2], steps=1, top_k=3).results
        ref_ = engine.query("s", xi[:2], steps=1, top_k=3).results
        for a, b in zip(ref_, got, strict=True):
            assert [m.id for m in a.matches] == [m.id for m in b.matches]
            np.testing.assert_allclose(b.energy, a.energy, rtol=1e-6, atol=1e-6)
