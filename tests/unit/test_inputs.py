"""QueryInput: the one validating constructor of a query, and the guarantees it gives."""

from __future__ import annotations

import numpy as np
import pytest

from lam_engine import BankConfig, Engine, QueryInput
from lam_engine.config import QUERY
from lam_engine.errors import (
    DimensionMismatchError,
    EmptyBatchError,
    InvalidInputError,
    InvalidParameterError,
    NonFiniteError,
)


def test_build_gives_the_documented_guarantees() -> None:
    rows = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    q = QueryInput.build(rows, mask=[True, False, True], beta=np.float32(2.0), steps=np.int64(3))
    assert q.queries.dtype == np.float32 and q.queries.flags.c_contiguous
    assert q.queries.shape == (2, 3) and not np.shares_memory(q.queries, rows)
    assert q.mask is not None and q.mask.shape == (2, 3) and q.mask.dtype == np.bool_
    assert q.beta == 2.0 and q.steps == 3 and isinstance(q.steps, int)
    assert (q.tol, q.top_k, q.with_payload, q.exact) == (
        QUERY.tol,
        QUERY.top_k,
        QUERY.with_payload,
        QUERY.exact,
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"queries": [[1.0, np.nan, 0.0]]}, NonFiniteError),
        ({"queries": [[1e39, 0.0, 0.0]]}, NonFiniteError),  # overflows float32
        ({"queries": []}, EmptyBatchError),
        ({"queries": [1.0, 2.0, 3.0]}, InvalidInputError),
        ({"queries": [[1.0, 2.0]], "dim": 3}, DimensionMismatchError),
        ({"mask": [True, False]}, DimensionMismatchError),
        ({"mask": [1, 0, 1]}, InvalidInputError),
        ({"beta": 0.0}, InvalidParameterError),
        ({"beta": 1e39}, InvalidParameterError),
        ({"steps": QUERY.steps_min - 1}, InvalidParameterError),
        ({"steps": QUERY.steps_max + 1}, InvalidParameterError),
        ({"steps": True}, InvalidParameterError),
        ({"tol": -1.0}, InvalidParameterError),
        ({"tol": float("inf")}, InvalidParameterError),
        ({"top_k": -1}, InvalidParameterError),
        ({"exact": "yes"}, InvalidParameterError),
    ],
)
def test_build_refuses_with_a_typed_error(kwargs: dict, error: type) -> None:
    args = {"queries": [[1.0, 0.0, 0.0]], **kwargs}
    with pytest.raises(error):
        QueryInput.build(args.pop("queries"), **args)


def test_engine_takes_a_query_input_or_builds_one() -> None:
    engine = Engine.open(None)
    engine.create_bank("b", BankConfig(dim=3, beta=4.0))
    engine.upsert("b", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["x", "y"])
    q = QueryInput.build([[0.9, 0.1, 0.0]], top_k=1)
    a = engine.query("b", q).results[0]
    b = engine.query("b", [[0.9, 0.1, 0.0]], top_k=1).results[0]
    assert a.matches[0].id == b.matches[0].id == "x"
    np.testing.assert_array_equal(a.state, b.state)
    with pytest.raises(InvalidParameterError):
        engine.query("b", q, top_k=2)  # parameters travel inside the input
    with pytest.raises(DimensionMismatchError):
        engine.query("b", QueryInput.build([[1.0, 0.0]]))
    engine.close()


def test_concat_joins_validated_inputs_without_checking_again() -> None:
    a = QueryInput.build([[1.0, 0.0]], top_k=2)
    b = QueryInput.build([[0.0, 1.0], [1.0, 1.0]], mask=[True, False], top_k=7)
    joined = QueryInput.concat([a, b])
    assert joined.queries.shape == (3, 2) and joined.top_k == 7
    assert joined.mask is not None
    assert joined.mask.tolist() == [[True, True], [True, False], [True, False]]
    assert QueryInput.concat([a, a]).mask is None
    with pytest.raises(InvalidParameterError):
        QueryInput.concat([a, QueryInput.build([[1.0, 0.0]], steps=2)])
