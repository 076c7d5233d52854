"""The prefiltered answer takes the index's scores as its candidates' ξ·v (retrieval.py).

That holds because every prefilter kind keeps the vectors exactly as the bank stores them
(Flat codes, widened to float32). So, for each kind and each bank dtype: a prefiltered query
answers as the exact pass does (same ids, scores, weights and energy within float32 and the
certificate's ε), and each match's score is the stored vector's inner product with the state
as the bank's dtype holds it (both paths take the state so: kernels/dispatch.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lam_engine import BankConfig, Engine, PrefilterConfig

N, D, BETA, TOL = 1500, 32, 32.0, 1e-3
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ST = 1e-5  # float32 rounding of an inner product of unit-scale vectors, with headroom


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.open(None)


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_prefiltered_answer_is_the_exact_one(
    engine: Engine, kind: str, dtype: str, steps: int
) -> None:
    name = f"{kind}-{dtype}-{steps}"
    rng = np.random.default_rng(11)
    xi = rng.standard_normal((N, D)).astype(np.float32)
    pf = PrefilterConfig(kind=kind, k=64, min_size=0, tolerance=TOL)
    engine.create_bank(
        name, BankConfig(dim=D, beta=BETA, normalize=True, dtype=dtype, prefilter=pf)
    )
    engine.upsert(name, xi, ids=[f"m{i}" for i in range(N)])
    assert engine.bank_info(name).index["effective_kind"] == kind  # IVF trained at N ≥ 1000
    cues = xi[:6] + 0.3 * rng.standard_normal((6, D)).astype(np.float32)
    kw = {"steps": steps, "top_k": 5, "with_vectors": True}
    got = engine.query(name, cues, **kw).results
    want = engine.query(name, cues, exact=True, **kw).results
    for g, w in zip(got, want, strict=True):
        assert g.prefiltered and g.missed_mass_bound is not None
        eps = g.missed_mass_bound
        assert eps <= TOL
        np.testing.assert_allclose(g.state, w.state, atol=ST + 2 * eps)
        assert g.steps == w.steps
        assert abs(g.energy - w.energy) <= ST + 1e-5 * abs(w.energy) + eps
        assert [m.id for m in g.matches] == [m.id for m in w.matches]
        v = torch.from_numpy(np.asarray(g.state)).to(DTYPES[dtype]).double().numpy()
        for mg, mw in zip(g.matches, w.matches, strict=True):
            assert abs(mg.score - mw.score) <= ST
            # Renormalized over the candidates: up to ε more than the exact weight, plus the
            # rounding of a logit β·s (float32: ≈ 6e-8 · β relative in the weight, per side).
            wtol = 1e-6 * BETA + mw.weight * BETA * ST
            assert mw.weight - wtol <= mg.weight <= mw.weight + eps + wtol
            # The score is the stored vector's (as stored: rounded to the bank's dtype) with
            # the state as that dtype holds it.
            stored = np.asarray(mg.vector, dtype=np.float64)
            assert abs(mg.score - stored @ v) <= 1e-5
