"""A shard's prefiltered pass at the returned state (need_out=False) reads the index's scores
instead of gathering the candidates: its partials are the exact ones of its candidates
(float64 reference), and a float32 shard's equal those of the full pass, without Ξᵀ p."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lam_engine.bank import MemoryBank
from lam_engine.config import BankConfig, PrefilterConfig
from lam_engine.index import make_prefilter
from lam_engine.shards.local import LocalShard


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_last_pass_is_exact_over_its_candidates(kind: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    n, d, beta, k = 2000, 24, 8.0, 64
    xi = rng.standard_normal((n, d)).astype(np.float32)
    bank = MemoryBank(BankConfig(dim=d, dtype=dtype, normalize=True), torch.device("cpu"))
    bank.apply(bank.prepare(xi, [f"m{i}" for i in range(n)]), np.arange(n) * 2 + 5)
    bank.remove(["m7", "m1500"])
    bank.compact()  # a gap in the keys: rows_for_keys takes its binary search
    index = make_prefilter(PrefilterConfig(kind=kind), d)
    index.rebuild(bank.keys, bank.alive_vectors())
    shard = LocalShard(bank, index)
    v = torch.from_numpy(bank.alive_vectors()[:3] + 0.1 * rng.standard_normal((3, d))).float()
    last = shard.candidates(v, beta, k_candidates=k, top_k=5, need_out=False)
    assert last.parts.v.shape == (3, 0)

    v_held = v.to(bank.xi.dtype).double().numpy()  # the state as the bank's dtype holds it
    _, keys = index.search(v_held.astype(np.float32), k)
    rows = bank.rows_for_keys(keys)
    h = np.einsum("bkd,bd->bk", bank.xi.double().numpy()[rows], v_held)  # (3, k)
    top = -np.sort(-h, axis=1)[:, :5]
    np.testing.assert_allclose(last.parts.top_scores, top, rtol=0, atol=1e-5)
    lse = np.logaddexp.reduce(beta * h, axis=1)
    np.testing.assert_allclose(last.parts.m + np.log(last.parts.s), lse, rtol=0, atol=1e-5 * beta)
    want_keys = np.take_along_axis(keys, np.argsort(-h, axis=1)[:, :5], axis=1)
    assert np.array_equal(last.parts.top_rows.numpy(), want_keys)

    if dtype == "float32":
        full = shard.candidates(v, beta, k_candidates=k, top_k=5)
        assert full.parts.v.shape == (3, d)
        assert torch.equal(full.parts.top_rows, last.parts.top_rows)
        np.testing.assert_allclose(last.parts.m, full.parts.m, rtol=0, atol=1e-5 * beta)
        np.testing.assert_allclose(last.log_tail, full.log_tail, rtol=0, atol=1e-5 * beta)
