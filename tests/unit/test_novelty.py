"""Novelty-gated store (engine): the in-order rule against tests/reference.py."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lam_engine import BankConfig, Engine
from lam_engine.errors import InvalidParameterError, NumericOverflowError
from lam_engine.math.novelty import BANK, Running, judge_in_order
from lam_engine.results import UpsertResult
from tests import reference as ref

BETA = 8.0


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def bank_rows(engine: Engine, name: str) -> tuple[list[str], np.ndarray]:
    records, _ = engine.scroll(name, 1000, None, with_vectors=True)
    return [r.id for r in records], np.array([r.vector for r in records], dtype=np.float64)


def check_against_reference(
    engine: Engine, name: str, x: np.ndarray, ids: list[str], tau: float
) -> UpsertResult:
    """Store x with if_novel=tau and compare stored set, energies, nearest with the oracle."""
    cfg = engine.bank_info(name).config
    before_ids, before_xi = bank_rows(engine, name)
    stored_x = ref.normalize(x) if cfg.normalize else np.asarray(x, np.float64)
    want, energies, nearest = ref.novelty(before_xi, stored_x, cfg.beta, tau)
    assert np.all(np.abs(energies - tau) > 1e-4), "a decision within rounding of τ"
    res = engine.upsert(name, x, ids, if_novel=tau)
    assert res.ids == [i for i, keep in zip(ids, want, strict=True) if keep]
    assert [s.index for s in res.skipped or []] == np.flatnonzero(~want).tolist()
    names = before_ids + ids
    for s in res.skipped or []:
        assert s.id == ids[s.index]
        assert s.energy == pytest.approx(energies[s.index], rel=1e-5, abs=1e-5)
        assert s.nearest == names[nearest[s.index]]
    assert res.count == len(before_ids) + int(want.sum())
    after_ids, _ = bank_rows(engine, name)
    assert after_ids == before_ids + res.ids
    return res


@pytest.fixture
def engine() -> Engine:
    e = Engine.open(None)
    yield e
    e.close()


def test_near_duplicates_of_the_bank_and_of_each_other(engine: Engine) -> None:
    engine.create_bank("b", BankConfig(dim=4, beta=BETA, normalize=True))
    eye = np.eye(4, dtype=np.float32)
    engine.upsert("b", eye[:2], ["m0", "m1"])
    x = np.array(
        [
            [1, 0.02, 0, 0],  # near m0: skipped
            [0, 0, 1, 0],  # novel
            [0, 0, 1, 0.03],  # near the previous one: skipped
            [0, 0, 0, 1],  # novel
            [0.02, 1, 0, 0],  # near m1: skipped
            [0, 0.01, 0.02, 1],  # near row 3: skipped
        ],
        dtype=np.float32,
    )
    ids = ["d0", "n2", "d2", "n3", "d1", "d3"]
    res = engine.upsert("b", x, ids, if_novel=0.0)
    assert res.ids == ["n2", "n3"] and res.count == 4
    nearest = {s.id: s.nearest for s in res.skipped or []}
    assert nearest == {"d0": "m0", "d2": "n2", "d1": "m1", "d3": "n3"}
    assert [s.index for s in res.skipped or []] == [0, 2, 4, 5]
    assert all(s.energy <= 0.0 and math.isfinite(s.energy) for s in res.skipped or [])
    # The energy judged against the bank alone is the plain E of /energy.
    v = unit(x[4:5])
    assert res.skipped[2].energy == pytest.approx(float(engine.energy("b", v).energies[0]))  # type: ignore[index]


def test_empty_bank_stores_the_first_and_judges_the_rest(engine: Engine) -> None:
    engine.create_bank("e", BankConfig(dim=3, beta=BETA, normalize=True))
    x = np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0]], dtype=np.float32)
    res = engine.upsert("e", x, ["a", "b", "c"], if_novel=1e9)  # τ above any finite E
    assert res.ids == ["a"] and res.count == 1  # only E = +inf (empty support) is above τ
    assert [(s.id, s.nearest) for s in res.skipped or []] == [("b", "a"), ("c", "a")]
    assert all(math.isfinite(s.energy) for s in res.skipped or [])


def test_the_same_vector_twice_without_ids(engine: Engine) -> None:
    engine.create_bank("c", BankConfig(dim=2, beta=BETA))
    v = [[0.6, 0.8], [0.6, 0.8]]
    res = engine.upsert("c", v, if_novel=0.0)
    assert len(res.ids) == 1 and res.count == 1
    (s,) = res.skipped or []
    assert (s.index, s.id, s.nearest) == (1, res.ids[0], res.ids[0])
    # Without a gate the two rows are one memory, both positions listed (unchanged).
    plain = engine.upsert("c", [[0.0, 1.0], [0.0, 1.0]])
    assert len(plain.ids) == 2 and plain.skipped is None and "skipped" not in plain.to_dict()


def test_all_skipped_changes_nothing(engine: Engine) -> None:
    engine.create_bank("s", BankConfig(dim=3, beta=BETA, normalize=True))
    engine.upsert("s", np.eye(3), ["a", "b", "c"])
    generation = engine.storage.generation("s")
    res = engine.upsert("s", np.eye(3) + 0.01, ["x", "y", "z"], if_novel=0.0)
    assert res.ids == [] and res.count == 3 and len(res.skipped or []) == 3
    assert engine.storage.generation("s") == generation
    assert bank_rows(engine, "s")[0] == ["a", "b", "c"]


@pytest.mark.parametrize("tau", [math.nan, math.inf, -math.inf, "1", True, 10**400, [0.0]])
def test_bad_tau_is_refused_and_changes_nothing(engine: Engine, tau: object) -> None:
    engine.create_bank("t", BankConfig(dim=2))
    with pytest.raises(InvalidParameterError):
        engine.upsert("t", [[1.0, 0.0]], ["a"], if_novel=tau)  # type: ignore[arg-type]
    assert engine.bank_info("t").count == 0


def test_replacement_is_judged_against_its_old_version(engine: Engine) -> None:
    engine.create_bank("r", BankConfig(dim=4, beta=BETA, normalize=True))
    engine.upsert("r", np.eye(4)[:3], ["a", "b", "c"], [{"v": 1}, None, None])
    res = engine.upsert("r", [[1, 0.01, 0, 0]], ["a"], [{"v": 2}], if_novel=0.0)
    assert res.ids == [] and (res.skipped or [])[0].nearest == "a"
    assert engine.get_memory("r", "a").payload == {"v": 1}
    res = engine.upsert("r", [[0, 0, 0, 1]], ["a"], [{"v": 3}], if_novel=0.0)  # far from all
    assert res.ids == ["a"] and res.count == 3
    assert engine.get_memory("r", "a").payload == {"v": 3}


def test_deleted_rows_never_count(engine: Engine) -> None:
    engine.create_bank("d", BankConfig(dim=3, beta=BETA, normalize=True))
    engine.upsert("d", np.eye(3), ["a", "b", "c"])
    engine.delete_memories("d", ["a"])  # a tombstone (−inf bias), not compacted yet
    res = engine.upsert("d", [[1, 0.01, 0]], ["a2"], if_novel=0.0)
    assert res.ids == ["a2"]


def test_blocks_of_a_large_batch_match_the_reference() -> None:
    # A small memory budget splits the batch into blocks of 64 rows (novelty.judge).
    with Engine.open(None, chunk_bytes=8 * 200 * 64) as engine:
        engine.create_bank("k", BankConfig(dim=32, beta=6.0, normalize=True))
        rng = np.random.default_rng(3)
        base = rng.normal(size=(40, 32))  # 40 directions, 20 of them in the bank
        engine.upsert("k", base[:20], [f"m{i}" for i in range(20)])
        # Near-duplicates of the bank, of earlier batch rows and fresh directions, mixed.
        x = np.concatenate([base + 0.05 * rng.normal(size=base.shape) for _ in range(5)])
        x = x[rng.permutation(len(x))].astype(np.float32)
        res = check_against_reference(engine, "k", x, [f"x{i}" for i in range(len(x))], -0.3)
        assert len(res.ids) == 20  # one copy of each new direction, found in 4 blocks


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtype_banks_judge_the_stored_values(engine: Engine, dtype: str) -> None:
    engine.create_bank("f", BankConfig(dim=6, beta=4.0, dtype=dtype))
    rng = np.random.default_rng(7)
    # Multiples of 1/8 in [-2, 2]: exact in either dtype, so "as stored" is x itself.
    base = np.round(rng.normal(size=(12, 6)) * 8).clip(-16, 16) / 8
    engine.upsert("f", base[:6], [f"m{i}" for i in range(6)])
    x = np.concatenate([base, base[::-1] + 0.125]).astype(np.float32)
    check_against_reference(engine, "f", x, [f"x{i}" for i in range(len(x))], tau=-1.0)


def test_model_a_bank_is_judged_by_model_b(engine: Engine) -> None:
    engine.create_bank("a", BankConfig(dim=4, model="A", beta=2.0))
    engine.upsert("a", [[1, 1, -1, -1], [1, -1, 1, -1]], ["p", "q"])
    x = np.array([[1, 1, -1, -1], [-1, 1, 1, 1], [-1, 1, 1, 1.0]], dtype=np.float32)
    check_against_reference(engine, "a", x, ["u", "v", "w"], tau=-1.0)


def test_concurrent_gated_stores_store_once(engine: Engine) -> None:
    engine.create_bank("w", BankConfig(dim=3, beta=BETA, normalize=True))
    engine.upsert("w", [[0, 0, 1]], ["z"])
    results = []

    def store(i: int) -> None:
        results.append(engine.upsert("w", [[1, 0.01 * i, 0]], [f"v{i}"], if_novel=0.0))

    threads = [threading.Thread(target=store, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.ids) for r in results) == 1 and engine.bank_info("w").count == 2


def test_judge_in_order_folds_only_accepted_rows() -> None:
    # Rows 0 and 1 identical, row 2 far: 0 accepted, 1 skipped (nearest 0), 2 accepted.
    run = Running.from_bank(np.full(3, -np.inf), np.full(3, -np.inf))
    x = np.array([[1.0, 0], [1.0, 0], [0, 1.0]])
    accepted, energy = judge_in_order(run, 0, 0.5 * (x**2).sum(1), 4.0 * x @ x.T, 4.0, 0.0)
    assert accepted.tolist() == [True, False, True]
    assert energy[0] == math.inf and energy[1] == pytest.approx(0.5 - 1.0)
    assert run.ref.tolist()[1] == 0 and BANK not in run.ref.tolist()


@given(
    n=st.integers(0, 12),
    b=st.integers(1, 10),
    d=st.integers(2, 5),
    beta=st.sampled_from([1.0, 4.0, 16.0]),
    tau=st.floats(-1.5, 1.0),
    seed=st.integers(0, 2**31),
    deleted=st.integers(0, 3),
    normalize=st.booleans(),
)
def test_stored_set_equals_the_reference(
    n: int, b: int, d: int, beta: float, tau: float, seed: int, deleted: int, normalize: bool
) -> None:
    rng = np.random.default_rng(seed)
    xi = rng.normal(size=(n, d)).astype(np.float32)
    # Some batch rows near bank rows or near each other, the rest random.
    x = rng.normal(size=(b, d))
    for i in range(b):
        pick = rng.integers(3)
        if pick == 0 and n:
            x[i] = xi[rng.integers(n)] + 0.05 * rng.normal(size=d)
        elif pick == 1 and i:
            x[i] = x[rng.integers(i)] + 0.05 * rng.normal(size=d)
    x = x.astype(np.float32)
    with Engine.open(None) as engine:
        engine.create_bank("h", BankConfig(dim=d, beta=beta, normalize=normalize))
        if n:
            engine.upsert("h", xi, [f"m{i}" for i in range(n)])
            engine.delete_memories("h", [f"m{i}" for i in range(min(deleted, n))])
        _, live = bank_rows(engine, "h")
        stored_x = ref.normalize(x) if normalize else x.astype(np.float64)
        _, energies, _ = ref.novelty(live.reshape(-1, d), stored_x, beta, tau)
        # A decision within rounding of τ could go either way: not a case to judge on.
        assume(np.all(np.abs(energies - tau) > 1e-4 * (1 + np.abs(tau))))
        check_against_reference(engine, "h", x, [f"x{i}" for i in range(b)], tau)


def test_an_overflowing_energy_is_refused_not_reported(engine: Engine) -> None:
    engine.create_bank("o", BankConfig(dim=2, beta=100.0))
    engine.upsert("o", [[1e19, 1e19]], ["a"])
    # β·ξ·v leaves float32: the energy of a skipped memory would be NaN or −inf.
    with pytest.raises(NumericOverflowError):
        engine.upsert("o", [[1e19, 1.1e19]], ["b"], if_novel=0.0)
    assert engine.bank_info("o").count == 1


@given(
    n=st.integers(1, 12),
    b=st.integers(1, 8),
    beta=st.sampled_from([2.0, 8.0, 32.0]),
    tau=st.floats(-0.4, 0.4),
    seed=st.integers(0, 2**31),
)
def test_tau_bounds_the_cosines(n: int, b: int, beta: float, tau: float, seed: int) -> None:
    """docs/math.md: kept ⇒ cosine < ½ − τ to all before it; skipped ⇒ cosine to its
    nearest ≥ ½ − τ − β⁻¹ log N' (N' memories in its support)."""
    rng = np.random.default_rng(seed)
    xi = unit(rng.normal(size=(n, 4)))
    x = unit(xi[rng.integers(n, size=b)] + 0.3 * rng.normal(size=(b, 4)))  # near some
    with Engine.open(None) as engine:
        engine.create_bank("g", BankConfig(dim=4, beta=beta, normalize=True))
        engine.upsert("g", xi, [f"m{i}" for i in range(n)])
        res = engine.upsert("g", x, [f"x{i}" for i in range(b)], if_novel=tau)
        vec = {i: engine.get_memory("g", i).vector for i in [f"m{i}" for i in range(n)]}
        vec.update({f"x{i}": x[i] for i in range(b)})
        kept = {int(i[1:]) for i in res.ids}
        skipped = {s.index: s for s in res.skipped or []}
        eps = 1e-4
        for i in range(b):
            support = [f"m{j}" for j in range(n)] + [f"x{j}" for j in sorted(kept) if j < i]
            cos = {m: float(vec[m] @ x[i]) for m in support}
            if i in kept:
                assert max(cos.values()) < 0.5 - tau + eps
            else:
                near = cos[skipped[i].nearest]
                assert near == pytest.approx(max(cos.values()), abs=eps)
                assert near >= 0.5 - tau - math.log(len(support)) / beta - eps
