"""MemoryBank.rows_for_keys (the prefilter's keys back to rows) against a dict reference, on
banks whose keys run without gaps (the direct path) and with gaps (the binary search)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.bank import MemoryBank
from lam_engine.config import BankConfig


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    start=st.integers(0, 1000),
    gaps=st.booleans(),
    removed=st.sets(st.integers(0, 39), max_size=5),
    seed=st.integers(0, 2**16),
)
def test_rows_for_keys_matches_a_dict(n, start, gaps, removed, seed) -> None:
    rng = np.random.default_rng(seed)
    step = rng.integers(1, 4, size=n) if gaps else np.ones(n, dtype=np.int64)
    keys = start + np.concatenate([[0], np.cumsum(step)[:-1]]).astype(np.int64) if n else []
    bank = MemoryBank(BankConfig(dim=2), torch.device("cpu"))
    ids = [f"m{i}" for i in range(n)]
    if n:
        bank.apply(bank.prepare(rng.standard_normal((n, 2)), ids), keys)
    gone = [ids[i] for i in removed if i < n]
    bank.remove(gone)
    want = {int(k): row for row, k in enumerate(bank.keys) if bank._ids[row] is not None}
    ask = np.concatenate(
        [np.asarray(keys, dtype=np.int64), rng.integers(-1, start + 3 * n + 2, size=(30,))]
    )
    ask = ask.reshape(-1, 1) if ask.size % 2 else ask.reshape(2, -1)
    got = bank.rows_for_keys(ask)
    assert got.shape == ask.shape
    assert got.tolist() == [[want.get(int(k), -1) for k in row] for row in ask.tolist()]
