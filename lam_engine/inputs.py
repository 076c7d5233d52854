"""Validated inputs: built once at the boundary, then trusted by the engine's hot path."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .config import QUERY, check_beta
from .errors import DimensionMismatchError, InvalidParameterError
from .filters import Filter, parse_filter
from .vectors import as_mask, as_matrix


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    # numbers.Integral: numpy integers (from an array) are as good as Python ints.
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not lo <= int(value) <= hi
    ):
        raise InvalidParameterError(f"{name} must be an integer in [{lo}, {hi}]", {name: value})
    return int(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be a boolean", {name: repr(value)[:40]})
    return bool(value)


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not element-wise, equality
class QueryInput:
    """A batch of queries and their parameters, validated (API.md, "Query").

    Build it with `QueryInput.build`, the one validating constructor; whoever holds one
    may rely on, without checking again:

    * `queries`: a float32, C-contiguous, 2-D (B, d) numpy array, B ≥ 1, every value
      finite (inputs that overflow float32 were refused), owned by this object (a copy of
      the caller's data, never written to by the engine);
    * `mask`: None, or a bool C-contiguous (B, d) array (one row given was broadcast);
      true marks a known feature;
    * `beta`: None (the bank's β) or a float accepted by `config.check_beta`;
    * `steps` in [QUERY.steps_min, QUERY.steps_max] (0: score at the cue), `tol` finite
      ≥ 0, `top_k` in [0, QUERY.top_k_max];
    * `with_payload`, `with_vectors`, `exact`: bools;
    * `filter`: None or a parsed `Filter` (API.md "Filters"; InvalidFilterError if not).

    The bank's dimension is checked when `dim` is passed to `build`; the engine compares
    `dim` with the bank's (an integer comparison) and nothing else.
    """

    queries: np.ndarray  # (B, d) float32
    mask: np.ndarray | None = None  # (B, d) bool
    beta: float | None = None
    steps: int = QUERY.steps
    tol: float = QUERY.tol
    top_k: int = QUERY.top_k
    with_payload: bool = QUERY.with_payload
    with_vectors: bool = QUERY.with_vectors
    exact: bool = QUERY.exact
    filter: Filter | None = None

    @property
    def batch(self) -> int:
        return int(self.queries.shape[0])

    @property
    def dim(self) -> int:
        return int(self.queries.shape[1])

    def check_dim(self, dim: int) -> None:
        """The bank's dimension against the batch's (the only check left to the engine)."""
        if self.dim != dim:
            raise DimensionMismatchError(
                f"queries have dimension {self.dim}, the bank has {dim}",
                {"expected": dim, "got": self.dim},
            )

    def _params(self) -> tuple[Any, ...]:
        """The parameters a batch shares (all but the rows, the mask and top_k)."""
        # The filter by repr: Filter equality takes 1 == True (Python's), its repr does not.
        flt = None if self.filter is None else repr(self.filter)
        return (
            self.beta, self.steps, self.tol, self.with_payload, self.with_vectors, self.exact, flt
        )  # fmt: skip

    @classmethod
    def build(
        cls,
        queries: Any,
        *,
        dim: int | None = None,
        mask: Any = None,
        beta: Any = None,
        steps: Any = QUERY.steps,
        tol: Any = QUERY.tol,
        top_k: Any = QUERY.top_k,
        with_payload: Any = QUERY.with_payload,
        with_vectors: Any = QUERY.with_vectors,
        exact: Any = QUERY.exact,
        filter: Any = None,
    ) -> QueryInput:
        """Validate everything (typed LamError on the first problem) and build the input."""
        q = as_matrix(queries, dim, "queries")
        # A float needs no ABC check (`numbers.Real`: ≈ 2 µs a query).
        real = type(tol) is float or (not isinstance(tol, bool) and isinstance(tol, numbers.Real))
        if not real or not math.isfinite(tol) or tol < 0:
            raise InvalidParameterError("tol must be a finite number ≥ 0", {"tol": tol})
        m = as_mask(mask, q.shape[0], q.shape[1])
        return cls(
            queries=q,
            mask=None if m is None else np.ascontiguousarray(m),
            beta=None if beta is None else check_beta(beta),
            steps=_int_in("steps", steps, QUERY.steps_min, QUERY.steps_max),
            tol=float(tol),
            top_k=_int_in("top_k", top_k, 0, QUERY.top_k_max),
            with_payload=_flag("with_payload", with_payload),
            with_vectors=_flag("with_vectors", with_vectors),
            exact=_flag("exact", exact),
            filter=filter if isinstance(filter, Filter) else parse_filter(filter),
        )

    @classmethod
    def concat(cls, inputs: Sequence[QueryInput], *, top_k: int | None = None) -> QueryInput:
        """Validated inputs as one batch (a micro-batch), without checking them again.

        They must agree on the dimension and every parameter but `top_k`, which becomes the
        largest of theirs unless given; rows without a mask get an all-known one when
        another input has a mask. One copy of the rows, no finiteness check.
        """
        first = inputs[0]
        for other in inputs[1:]:
            if other.dim != first.dim or other._params() != first._params():
                raise InvalidParameterError("inputs of one batch must share dim and parameters")
        queries = np.concatenate([i.queries for i in inputs])  # (ΣB, d) float32, C order
        mask = None
        if any(i.mask is not None for i in inputs):
            mask = np.concatenate(
                [np.ones(i.queries.shape, bool) if i.mask is None else i.mask for i in inputs]
            )
        k = (
            max(i.top_k for i in inputs)
            if top_k is None
            else _int_in("top_k", top_k, 0, QUERY.top_k_max)
        )
        return replace(first, queries=queries, mask=mask, top_k=k)
