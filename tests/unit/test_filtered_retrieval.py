"""A filtered query behaves exactly as if the bank held only the passing memories.

For random payloads and random filters (every operator, nesting; the strategies of
test_filters.py), with and without payload indexes: the filtered query and energy on the
whole bank equal the unfiltered ones on a bank holding only the passing memories (states,
energy with and without constants, weights, top-k ids), and both equal tests/reference.py;
the same with the prefilter on, whose certificate holds over the selection. Also count,
scroll and delete by filter, and empty_selection.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lam_engine import BankConfig, Engine
from lam_engine.config import PrefilterConfig
from lam_engine.errors import EmptySelectionError, InvalidParameterError
from lam_engine.filters import InvalidFilterError
from tests import reference as ref
from tests.unit.test_filters import IDS, KEYS, filters, index_specs, payloads
from tests.unit.test_filters import reference as passes

D = 4
_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _engine() -> Engine:
    return Engine.open(None, default_device="cpu")


def _passing(flt: dict[str, Any], pls: list[Any]) -> list[int]:
    return [r for r, p in enumerate(pls) if passes(flt, IDS[r], p)]


@_settings
@given(
    pls=st.lists(payloads, min_size=1, max_size=len(IDS)),
    flt=filters,
    spec=index_specs,
    steps=st.sampled_from([0, 1, 3]),
    model=st.sampled_from(["B", "B", "B", "A", "C"]),
    seed=st.integers(0, 2**16),
)
def test_filtered_equals_bank_of_the_passing(
    pls: list[Any], flt: dict[str, Any], spec: dict[str, str], steps: int, model: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    n = len(pls)
    xi = rng.standard_normal((n, D)).astype(np.float32)
    cues = rng.standard_normal((3, D)).astype(np.float32)
    beta = 2.0
    sel = _passing(flt, pls)
    with _engine() as e:
        e.create_bank("all", BankConfig(dim=D, model=model, beta=beta, payload_index=spec))  # type: ignore[arg-type]
        e.upsert("all", xi, IDS[:n], pls)
        if n > 2:  # a tombstone or two: deleted rows are never selected
            e.delete_memories("all", [IDS[0]])
            sel = [r for r in sel if r != 0]
        assert e.count("all", flt) == len(sel)
        if not sel:
            with pytest.raises(EmptySelectionError):
                e.query("all", cues, filter=flt)
            with pytest.raises(EmptySelectionError):
                e.energy("all", cues, filter=flt)
            return
        e.create_bank("sub", BankConfig(dim=D, model=model, beta=beta))  # type: ignore[arg-type]
        e.upsert("sub", xi[sel], [IDS[r] for r in sel], [pls[r] for r in sel])
        got = e.query("all", cues, steps=steps, top_k=n, filter=flt)
        want = e.query("sub", cues, steps=steps, top_k=n)
        for g, w in zip(got.results, want.results, strict=True):
            np.testing.assert_allclose(g.state, w.state, rtol=1e-5, atol=1e-5)
            assert math.isclose(g.energy, w.energy, rel_tol=1e-5, abs_tol=1e-5)
            assert [m.id for m in g.matches] == [m.id for m in w.matches]
            np.testing.assert_allclose(
                [m.weight for m in g.matches], [m.weight for m in w.matches], atol=1e-5
            )
        for constants in (False, True):
            ge = e.energy("all", cues, constants=constants, gradient=True, filter=flt)
            we = e.energy("sub", cues, constants=constants, gradient=True)
            np.testing.assert_allclose(ge.energies, we.energies, rtol=1e-5, atol=1e-5)
            assert ge.gradients is not None and we.gradients is not None
            np.testing.assert_allclose(ge.gradients, we.gradients, rtol=1e-4, atol=1e-5)
        if model == "B":  # and against the one oracle
            state, _, _ = ref.retrieve(xi[sel], cues, beta, steps=steps, tol=0.0)
            states = np.stack([r.state for r in got.results])
            np.testing.assert_allclose(states, state, rtol=1e-4, atol=1e-4)
            ee = e.energy("all", states, constants=True, filter=flt).energies
            wref = ref.energy(xi[sel], states, beta, constants=True)
            np.testing.assert_allclose(ee, wref, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    steps=st.sampled_from([0, 1, 3]),
    share=st.sampled_from([0.05, 0.3, 0.6, 1.0]),
    kind=st.sampled_from(["flat", "hnsw"]),
    beta=st.sampled_from([4.0, 20.0]),  # 20: most queries certified; 4: most fall back
)
def test_prefiltered_over_the_selection(
    seed: int, steps: int, share: float, kind: str, beta: float
) -> None:
    """The prefilter over a selection: the answer is the selection's, within its bound."""
    rng = np.random.default_rng(seed)
    n = 200
    xi = rng.standard_normal((n, 8)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)]
    tenant = np.where(rng.random(n) < share, "a", "b")
    pls = [{"tenant": str(t), "i": i} for i, t in enumerate(tenant)]
    flt = {"must": [{"key": "tenant", "match": {"value": "a"}}]}
    sel = np.flatnonzero(tenant == "a")
    cues = xi[rng.integers(0, n, 4)] + 0.1 * rng.standard_normal((4, 8)).astype(np.float32)
    pre = PrefilterConfig(kind=kind, k=16, min_size=0, tolerance=1e-3)  # type: ignore[arg-type]
    with _engine() as e:
        e.create_bank(
            "all", BankConfig(dim=8, beta=beta, prefilter=pre, payload_index={"tenant": "keyword"})
        )
        e.upsert("all", xi, ids, pls)
        if len(sel) == 0:
            with pytest.raises(EmptySelectionError):
                e.query("all", cues, filter=flt)
            return
        got = e.query("all", cues, steps=steps, top_k=5, filter=flt)
        state, _, _ = ref.retrieve(xi[sel], cues, beta, steps=steps, tol=0.0)
        m = float(np.linalg.norm(xi[sel], axis=1).max())
        for i, r in enumerate(got.results):
            assert all(m_.id in {ids[j] for j in sel} for m_ in r.matches)
            eps = r.missed_mass_bound or 0.0
            assert eps <= 1e-3 or not r.prefiltered
            # each step's softmax is within ε of the selection's: ‖Δout‖ ≤ 2εM per step
            tol = 1e-4 + 2 * 1e-3 * m * max(1, steps) * 10
            np.testing.assert_allclose(r.state, state[i], atol=tol)
            if steps == 1 and r.prefiltered:
                np.testing.assert_allclose(r.state, state[i], atol=1e-4 + 2 * eps * m)


def test_count_scroll_delete_by_filter() -> None:
    with _engine() as e:
        e.create_bank("b", BankConfig(dim=2, payload_index={"t": "integer"}))
        ids = [f"m{i}" for i in range(10)]
        e.upsert(
            "b",
            np.eye(2, dtype=np.float32)[np.arange(10) % 2],
            ids,
            [{"t": i % 3} for i in range(10)],
        )
        two = {"must": [{"key": "t", "match": {"value": 2}}]}
        assert e.count("b") == 10 and e.count("b", two) == 3
        page, cursor = e.scroll("b", 2, filter=two, with_vectors=False)
        assert [r.id for r in page] == ["m2", "m5"] and cursor is not None
        page2, cursor2 = e.scroll("b", 2, cursor, filter=two)
        assert [r.id for r in page2] == ["m8"] and cursor2 is None
        assert e.count("b", {"must": [{"key": "t", "match": {"value": 9}}]}) == 0
        assert e.scroll("b", 5, filter={"must": [{"has_id": []}]}) == ([], None)
        assert e.delete_memories("b", filter=two) == 3
        assert e.count("b") == 7 and e.count("b", two) == 0
        assert e.delete_memories("b", filter=two) == 0
        # the index follows upserts: a memory rewritten into the selection is found
        e.upsert("b", [[1.0, 0.0]], ["m0"], [{"t": 2}])
        assert e.count("b", two) == 1
        with pytest.raises(InvalidParameterError):
            e.delete_memories("b")
        with pytest.raises(InvalidParameterError):
            e.delete_memories("b", ["m0"], filter=two)
        with pytest.raises(InvalidFilterError) as err:
            e.count("b", {"must": [{"key": "t", "range": {}}]})
        assert err.value.details["path"].startswith("filter.must[0]")


def test_payload_index_persists_and_patches(tmp_path: Any) -> None:
    with Engine.open(tmp_path, default_device="cpu") as e:
        e.create_bank("b", BankConfig(dim=2, payload_index={"t": "keyword"}))
        e.upsert("b", [[1.0, 0.0], [0.0, 1.0]], ["x", "y"], [{"t": "a"}, {"t": "b"}])
    with Engine.open(tmp_path, default_device="cpu") as e:
        info = e.bank_info("b")
        assert info.config.payload_index == {"t": "keyword"}
        flt = {"must": [{"key": "t", "match": {"value": "b"}}]}
        assert e.count("b", flt) == 1
        e.update_bank("b", payload_index={"t": "keyword", "u": "bool"})
        assert e.bank_info("b").config.payload_index == {"t": "keyword", "u": "bool"}
        assert e.count("b", flt) == 1
        with pytest.raises(InvalidParameterError):
            e.update_bank("b", payload_index={"t": "nope"})
    assert KEYS  # the shared strategies' keys are what the indexes above cover
