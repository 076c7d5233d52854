"""rows.row_times (the SQL time columns of a stored batch) against its per-element rule:
an entry is NULL where it is the column's neutral value or not finite, else the float."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lam_engine.store.rows import row_times

SPECIAL = [1.0, 0.5, 0.0, math.inf, -math.inf, math.nan, 1e9, 1.7e9]
value = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=True, allow_infinity=True))


def rule(x: float, neutral: float) -> float | None:
    return None if (x == neutral or not math.isfinite(x)) else float(x)


def column(n: int, draw_kind: str, values: list[float], scalar: float) -> object:
    if draw_kind == "none":
        return None
    if draw_kind == "scalar":
        return scalar
    return np.asarray(values[:n] + [1.0] * (n - len(values)), dtype=np.float64)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 12),
    kinds=st.lists(st.sampled_from(["none", "scalar", "array"]), min_size=4, max_size=4),
    values=st.lists(st.lists(value, max_size=12), min_size=4, max_size=4),
    scalars=st.lists(value, min_size=4, max_size=4),
)
def test_row_times_follows_the_per_element_rule(n, kinds, values, scalars) -> None:
    cols = [column(n, k, v, s) for k, v, s in zip(kinds, values, scalars, strict=True)]
    got = row_times(n, *cols)
    neutral = (1.0, math.nan, math.nan, math.inf)
    assert len(got) == n
    for r, row in enumerate(got):
        assert len(row) == 4
        for c, (x, neu) in enumerate(zip(cols, neutral, strict=True)):
            if x is None:
                want = None
            else:
                want = rule(float(np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))[r]), neu)
            assert row[c] == want and type(row[c]) is type(want), (r, c, row[c], want)


def test_a_bulk_batch_shares_one_stored_at_and_keeps_strengths() -> None:
    s = np.array([1.0, 2.5, np.inf, 0.25])
    got = row_times(4, s, 1_700_000_000.0, None, np.array([np.inf, 5.0, np.nan, 7.0]))
    assert got == [
        (None, 1_700_000_000.0, None, None),
        (2.5, 1_700_000_000.0, None, 5.0),
        (None, 1_700_000_000.0, None, None),
        (0.25, 1_700_000_000.0, None, 7.0),
    ]
