"""When a bank tries its prefilter (lam_engine/certificate_rate.py): a bank whose certificate
keeps failing goes straight to the dense pass, probing the index now and then, and every
answer stays the exact one (checked against tests/reference.py)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from lam_engine import BankConfig, Engine, PrefilterConfig
from lam_engine import certificate_rate as cr
from tests import reference as oracle


def test_rate_needs_min_rows_then_skips_and_probes() -> None:
    rate = cr.CertificateRate()
    rate.observe(cr.MIN_ROWS - 1, cr.MIN_ROWS - 1)  # all failed, but too few to trust
    assert rate.should_try()
    rate.observe(1, 1)
    assert rate.rate > cr.SKIP_ABOVE
    tries = [rate.should_try() for _ in range(3 * cr.PROBE_EVERY)]
    assert tries.count(True) == 3  # one probe per PROBE_EVERY batches
    assert tries[cr.PROBE_EVERY - 1] and not any(tries[: cr.PROBE_EVERY - 1])


def test_rate_recovers_when_the_certificate_holds_again() -> None:
    rate = cr.CertificateRate()
    rate.observe(200, 200)
    assert not rate.should_try()
    for _ in range(10):  # probes that succeed pull the rate down
        rate.observe(16, 0)
    assert rate.rate <= cr.SKIP_ABOVE and rate.should_try()
    rate.observe(0, 0)  # an empty batch changes nothing
    assert rate.rows == 200 + 160


def test_rate_of_is_per_index_and_forgets_dropped_ones() -> None:
    class Index:
        pass

    a, b = Index(), Index()
    assert cr.rate_of(a) is cr.rate_of(a)
    assert cr.rate_of(a) is not cr.rate_of(b)
    gc.collect()  # indexes of earlier tests that are garbage already leave first
    n = len(cr._RATES)
    del a
    gc.collect()
    assert len(cr._RATES) == n - 1
    assert cr.rate_of(1) is None  # not weakly referenceable: always tried


def _bank(engine: Engine, n: int = 1500, d: int = 32) -> np.ndarray:
    rng = np.random.default_rng(5)
    xi = rng.standard_normal((n, d))
    xi = (xi / np.linalg.norm(xi, axis=1, keepdims=True)).astype(np.float32)
    pf = PrefilterConfig(kind="flat", k=32, min_size=1, tolerance=1e-3)
    engine.create_bank("p", BankConfig(dim=d, normalize=True, prefilter=pf))
    engine.upsert("p", xi)
    return xi


@pytest.mark.parametrize("steps", [0, 1])
def test_failing_certificate_skips_the_search_and_stays_exact(steps: int) -> None:
    engine = Engine.open(None, default_device="cpu")
    try:
        xi = _bank(engine)
        index = engine._slot("p").prefilter
        searches = []
        search = index.search
        index.search = lambda q, k: searches.append(len(q)) or search(q, k)  # type: ignore[method-assign]
        rng = np.random.default_rng(6)
        batches = cr.MIN_ROWS // 8 + cr.PROBE_EVERY + 1
        for i in range(batches):
            q = xi[i : i + 8] + 0.2 * rng.standard_normal((8, 32)).astype(np.float32)
            # β = 1: 32 candidates of 1500 miss most of the mass, the certificate fails
            res = engine.query("p", q, beta=1.0, steps=steps, top_k=3, with_payload=False)
            assert not res.prefiltered
            want, _, _ = oracle.retrieve(xi, q, 1.0, steps=steps, normalize_cue=True)
            got = np.stack([r.state for r in res.results])
            np.testing.assert_allclose(got, want, atol=1e-5)
            e_want = oracle.energy(xi, want, 1.0)
            np.testing.assert_allclose([r.energy for r in res.results], e_want, rtol=1e-5)
            p = oracle.weights(xi, want, 1.0)
            for row, r in enumerate(res.results):
                top = np.argsort(-p[row], kind="stable")[:3]
                np.testing.assert_allclose([m.weight for m in r.matches], p[row, top], rtol=1e-4)
                # a skipped query reads like a fallback: exact, bound 0, not prefiltered
                assert r.missed_mass_bound == 0.0 and r.prefiltered is False
        # the first MIN_ROWS rows are tried (a descent step searches once per pass), then
        # only one batch in PROBE_EVERY
        tried_batches = len(searches) // (steps + 1)
        assert tried_batches == cr.MIN_ROWS // 8 + 1  # then one probe
        sharp = engine.query("p", xi[:8], beta=64.0)  # certified: the probe's success counts
        assert sharp.prefiltered or len(searches) // (steps + 1) == tried_batches
    finally:
        engine.close()
