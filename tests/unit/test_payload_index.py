"""PayloadIndex: exact answers at the edges where a float64 or int64 array could round.

The property tests in test_filters.py compare indexed and unindexed evaluation on random
data; these pin the cases random data reaches too rarely: int bounds beyond 2^53 on a float
index, int/float kinds kept apart, values beyond int64, residual rows, writes after a read.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from lam_engine.errors import InvalidParameterError
from lam_engine.payload_index import PayloadIndex
from lam_engine.payload_values import MISSING, float_lower, float_upper, lookup

P53 = 2**53


def _index(kind: str, values: list[Any]) -> PayloadIndex:
    index = PayloadIndex(kind)
    index.add(range(len(values)), values)
    return index


def test_float_thresholds_are_exact_for_big_ints() -> None:
    for b in (P53 + 1, -(P53 + 1), 2**62 + 1, 2**63 - 1, 3, 0):
        for inclusive in (True, False):
            f, fi = float_lower(b, inclusive)
            g, gi = float_upper(b, inclusive)
            for e in (float(b), math.nextafter(float(b), math.inf), math.nextafter(float(b), 0)):
                assert (e >= f if fi else e > f) == (e >= b if inclusive else e > b)
                assert (e <= g if gi else e < g) == (e <= b if inclusive else e < b)


def test_float_index_range_with_int_bounds_beyond_2_53() -> None:
    index = _index("float", [2.0**53, 2.0**53 + 2, P53, 1.5, P53 + 1])
    assert index.range(gte=P53 + 1).tolist() == [1]  # 2^53 < 2^53 + 1 exactly
    assert index.range(gt=P53).tolist() == [1]
    assert index.range(lte=P53 + 1).tolist() == [0, 2, 3]
    assert index.range(lt=P53).tolist() == [3]
    assert index.residual_rows().tolist() == [4]  # not exact as a float64: read from payload


def test_float_index_keeps_ints_and_floats_apart_for_match() -> None:
    index = _index("float", [1.0, 1, [2.0, 1], True, "1"])
    assert index.match_value(1).tolist() == [1, 2]  # the int 1, never 1.0
    assert index.match_value(True).tolist() == []  # bools are residual here
    assert index.residual_rows().tolist() == [3, 4]


def test_integer_index_with_float_bounds_and_huge_values() -> None:
    index = _index("integer", [1, 2, 3, 2**63, 2.5, -(2**63)])
    assert index.range(gt=1.5, lt=3).tolist() == [1]
    assert index.range(gte=1.5, lte=3.0).tolist() == [1, 2]
    assert index.range(lt=-(2**62)).tolist() == [5]
    assert index.match_value(2**63 - 1).tolist() == []
    assert index.residual_rows().tolist() == [3, 4]  # beyond int64; a float


def test_keyword_and_bool_indexes() -> None:
    index = _index("keyword", ["x", ["y", "x"], 1, None, MISSING, []])
    assert index.match_value("x").tolist() == [0, 1]
    assert index.match_any(["y", "z"]).tolist() == [1]
    assert index.match_any(["y", "x", "x", 1]).tolist() == [0, 1]
    many = _index("integer", [5, 1, [3, 1], 7, 3, 9])
    assert many.match_any([9, 3, 1, 4]).tolist() == [1, 2, 4, 5]  # several slices at once
    assert index.match_value(1).tolist() == []
    assert index.range(gte=0).tolist() == []
    assert index.residual_rows().tolist() == [2]
    assert np.flatnonzero(index.is_null_mask(7)).tolist() == [3, 4, 6]  # null, missing, unseen
    flags = _index("bool", [True, [False, True], 1, "true"])
    assert flags.match_value(True).tolist() == [0, 1]
    assert flags.match_value(1).tolist() == []
    assert flags.residual_rows().tolist() == [2, 3]


def test_writes_after_reads_replace_remove_and_remap() -> None:
    index = _index("keyword", ["x", "y", "x", "z"])
    assert index.match_value("x").tolist() == [0, 2]
    index.add([0, 4], ["y", "x"])  # an upsert of row 0, a new row 4
    assert index.match_value("x").tolist() == [2, 4]
    index.remove([2])
    assert index.match_value("x").tolist() == [4]
    index.remap(np.array([1, 3, 4]))  # rows 0 and 2 compacted away
    assert index.match_value("x").tolist() == [2]
    assert index.match_value("y").tolist() == [0]
    assert len(index) == 3


def test_unknown_kind_and_lookup() -> None:
    with pytest.raises(InvalidParameterError):
        PayloadIndex("text")
    assert lookup({"a": {"b": 1}}, ("a", "b")) == 1
    assert lookup({"a": [{"b": 1}]}, ("a", "b")) is MISSING
    assert lookup({"a": None}, ("a",)) is None
    assert lookup(None, ("a",)) is MISSING


def test_concurrent_readers_after_a_write_see_whole_answers() -> None:
    """Readers share the bank's lock: the first read after a write sorts, the others wait
    for it or read the previous entries, never a half-built index."""
    index = _index("integer", list(range(2000)))
    index.add(range(2000, 4000), list(range(2000, 4000)))  # pending: the next read sorts
    want = list(range(1000, 3000))
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: index.range(gte=1000, lt=3000).tolist(), range(16)))
    assert all(a == want for a in answers)
