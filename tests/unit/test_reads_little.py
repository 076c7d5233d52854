"""ops.reads_little: which queries the service may answer on its event loop (batching.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lam_engine import ops
from lam_engine.bank import MemoryBank
from lam_engine.config import BankConfig, PrefilterConfig
from lam_engine.index import make_prefilter
from lam_engine.inputs import QueryInput
from lam_engine.kernels import native

LIMIT = 4 << 20


def _bank(n: int, d: int, **cfg: object) -> MemoryBank:
    bank = MemoryBank(BankConfig(dim=d, **cfg), torch.device("cpu"))
    xi = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    bank.apply(bank.prepare(xi, [f"m{i}" for i in range(n)]), np.arange(n))
    return bank


def _q(d: int, b: int = 1, **kw: object) -> QueryInput:
    return QueryInput.build(np.ones((b, d), dtype=np.float32), **kw)


def test_small_banks_are_light_and_large_dense_ones_are_not() -> None:
    small, large = _bank(100, 16), _bank(3000, 384)  # 6.4 KB; 4.6 MB a pass
    assert ops.reads_little(small, None, _q(16, steps=3), LIMIT)
    assert not ops.reads_little(small, None, _q(16, b=5), LIMIT)  # more than 4 queries
    assert not ops.reads_little(large, None, _q(384, steps=0), LIMIT)
    assert not ops.reads_little(_bank(100, 16, model="A"), None, _q(16), LIMIT)


def test_a_trained_ivf_index_makes_a_large_bank_light_unless_exact() -> None:
    bank = _bank(3000, 384)
    ivf = make_prefilter(PrefilterConfig(kind="ivf"), 384)
    ivf.rebuild(bank.keys, bank.alive_vectors())
    flat = make_prefilter(PrefilterConfig(kind="flat"), 384)
    flat.rebuild(bank.keys, bank.alive_vectors())
    assert ops.reads_little(bank, ivf, _q(384, steps=1), LIMIT)
    assert not ops.reads_little(bank, ivf, _q(384, exact=True), LIMIT)
    # FAISS searches a flat index this small (3000 < 8 m rows, m = 4 · 256): it reads it all.
    assert not flat.light_search
    assert not ops.reads_little(bank, flat, _q(384), LIMIT)


@pytest.mark.skipif(not native.available(), reason="native code not built here")
def test_a_flat_index_on_its_codes_is_light() -> None:
    """With k = 8 (m = 256 candidates) 3000 rows are searched on the int8 codes."""
    bank = _bank(3000, 384, prefilter=PrefilterConfig(kind="flat", k=8))
    flat = make_prefilter(PrefilterConfig(kind="flat", k=8), 384)
    flat.rebuild(bank.keys, bank.alive_vectors())
    assert flat.light_search
    assert ops.reads_little(bank, flat, _q(384, steps=1), LIMIT)
    assert not ops.reads_little(bank, flat, _q(384, exact=True), LIMIT)
