"""The payload filter language (docs/API.md, "Filters") → a selection of rows.

`parse_filter(obj)` validates a filter once, at the boundary, into a small typed tree of
frozen dataclasses; `evaluate(filter, view)` turns it into a bool mask over a bank's rows
(`PayloadView`), using the bank's payload indexes where it has them. Semantics (the
decisions API.md leaves open follow Qdrant's documented behaviour; docs/filters.md):

- A filter is {"must", "should", "must_not"}, each a list of conditions (null or a missing
  list = absent). must: all hold; should: at least one holds, and an EMPTY should list is
  treated as absent (it constrains nothing, rather than selecting nothing); must_not: none
  holds. `{}` selects every memory. Rows of deleted memories are never selected.
- `key` is a dotted path through JSON objects only ("a.b" = payload["a"]["b"]); a step into
  an array or a scalar finds nothing. The value found, when it is an array, is tested
  element by element (one level: nested arrays and objects never match a match or a range),
  and the condition holds when it holds for one element.
- match value: a string, an integer or a bool, equal to an element of the same JSON kind
  (1 does not match true, nor 1.0; floats are refused as match values: use a range).
  match any: the same, for one of the values; `any: []` matches nothing.
- range: gt / gte / lt / lte, numbers (int or float, not bool; finite), at least one; all
  given bounds must hold for the same element; ints and floats compare exactly.
- is_null (only `true`; negate with must_not): the key is missing (absent, payload null, or
  the path steps through a non-object), or the value is null, or an array with a null
  element. `[]` is not null (it is Qdrant's is_empty, which LAM does not have).
- has_id: the memory's id is one of the list.
A malformed filter raises InvalidFilterError (422 invalid_filter) with details
{"path": "filter.must[1].range.gte", "reason": ...}: the first malformed part found.
Bounds: filters nest at most MAX_DEPTH levels, hold at most MAX_CONDITIONS conditions, and
lists of values (any, has_id) at most MAX_VALUES elements.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import numpy as np

from .errors import InvalidInputError
from .payload_index import PayloadIndex, PayloadIndexes, PayloadView, RowsView
from .payload_values import (
    INT64_MAX,
    INT64_MIN,
    elements,
    found_is_null,
    lookup,
    scalar_kind,
    split_key,
)

__all__ = [
    "Filter", "HasId", "InvalidFilterError", "IsNull", "MatchAny", "MatchValue", "PayloadIndexes",
    "PayloadView", "Range", "RowsView", "evaluate", "parse_filter",
]  # fmt: skip

MAX_DEPTH: Final = 32
MAX_CONDITIONS: Final = 1024
MAX_VALUES: Final = 65_536
_CLAUSES: Final = ("must", "should", "must_not")
_OPERATORS: Final = ("match", "range", "is_null")
_BOUNDS: Final = ("gt", "gte", "lt", "lte")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Scalar: TypeAlias = "str | int | bool"
Number: TypeAlias = "int | float"


class InvalidFilterError(InvalidInputError):
    """A malformed filter; details = {"path": ..., "reason": ...} (HTTP 422)."""

    code = "invalid_filter"


# ---- the typed tree -----------------------------------------------------------------------
@dataclass(frozen=True)
class MatchValue:
    key: tuple[str, ...]
    value: Scalar

    def holds(self, found: Any) -> bool:
        kind = scalar_kind(self.value)
        return any(scalar_kind(e) == kind and e == self.value for e in elements(found))


@dataclass(frozen=True)
class MatchAny:
    key: tuple[str, ...]
    values: tuple[Scalar, ...]
    # (kind, value) pairs: a set lookup that keeps 1, True and "1" apart.
    _typed: frozenset[tuple[str | None, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        typed = frozenset((scalar_kind(v), v) for v in self.values)
        object.__setattr__(self, "_typed", typed)

    def holds(self, found: Any) -> bool:
        typed = self._typed
        return any(
            (k := scalar_kind(e)) in ("str", "int", "bool") and (k, e) in typed
            for e in elements(found)
        )


@dataclass(frozen=True)
class Range:
    key: tuple[str, ...]
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None

    def holds(self, found: Any) -> bool:
        return any(self._number_holds(e) for e in elements(found))

    def _number_holds(self, e: Any) -> bool:
        if scalar_kind(e) not in ("int", "float"):
            return False
        return (
            (self.gt is None or e > self.gt)
            and (self.gte is None or e >= self.gte)
            and (self.lt is None or e < self.lt)
            and (self.lte is None or e <= self.lte)
        )


@dataclass(frozen=True)
class IsNull:
    key: tuple[str, ...]

    def holds(self, found: Any) -> bool:
        return found_is_null(found)


@dataclass(frozen=True)
class HasId:
    ids: frozenset[str]


@dataclass(frozen=True)
class Filter:
    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()  # () = absent (an empty list is treated the same)
    must_not: tuple[Condition, ...] = ()

    def evaluate(self, view: PayloadView) -> np.ndarray:
        """(N,) bool: the rows of `view` this filter selects (alive ones only)."""
        return _eval(self, view, np.asarray(view.alive, dtype=bool).copy())


FieldCondition: TypeAlias = "MatchValue | MatchAny | Range | IsNull"
Condition: TypeAlias = "FieldCondition | HasId | Filter"


def evaluate(flt: Filter | None, view: PayloadView) -> np.ndarray:
    """(N,) bool mask of the selected rows; no filter selects every alive row."""
    alive = np.asarray(view.alive, dtype=bool).copy()
    return alive if flt is None else _eval(flt, view, alive)


# ---- evaluation ---------------------------------------------------------------------------
# Every node is evaluated on a candidate mask and returns its exact answer within it, so
# a condition that has to read payloads reads only the rows still in play.
def _eval(node: Condition, view: PayloadView, cand: np.ndarray) -> np.ndarray:
    if isinstance(node, Filter):
        return _eval_filter(node, view, cand)
    if isinstance(node, HasId):
        out = np.zeros_like(cand)
        rows = [r for r in (view.row_of(i) for i in node.ids) if r is not None]
        out[rows] = True
        return out & cand
    index = view.indexes.get(node.key) if view.indexes is not None else None
    if index is None:
        return _scan(node, view, cand)
    return _eval_indexed(node, index, view, cand)


def _cost(node: Condition, view: PayloadView) -> int:
    """Order of evaluation in a clause: cheap (indexed, ids) first, payload scans last."""
    if isinstance(node, HasId):
        return 0
    if isinstance(node, Filter):
        return 1
    indexed = view.indexes is not None and view.indexes.get(node.key) is not None
    return 0 if indexed else 2


def _eval_filter(flt: Filter, view: PayloadView, cand: np.ndarray) -> np.ndarray:
    out = cand
    for c in sorted(flt.must, key=lambda c: _cost(c, view)):
        if not out.any():
            return out
        out = _eval(c, view, out)
    if flt.should:
        hit = np.zeros_like(out)
        for c in sorted(flt.should, key=lambda c: _cost(c, view)):
            hit |= _eval(c, view, out & ~hit)  # rows already in need no second look
        out = hit
    for c in sorted(flt.must_not, key=lambda c: _cost(c, view)):
        if not out.any():
            return out
        out = out & ~_eval(c, view, out)
    return out


def _scan(node: FieldCondition, view: PayloadView, cand: np.ndarray) -> np.ndarray:
    """The unindexed path: read each candidate's payload (correct, O(candidates))."""
    out = np.zeros_like(cand)
    key, payload = node.key, view.payload
    for r in np.flatnonzero(cand).tolist():
        if node.holds(lookup(payload(r), key)):
            out[r] = True
    return out


def _eval_indexed(
    node: FieldCondition, index: PayloadIndex, view: PayloadView, cand: np.ndarray
) -> np.ndarray:
    n = len(cand)
    if isinstance(node, IsNull):  # presence and nulls are tracked for every row
        return index.is_null_mask(n) & cand
    if isinstance(node, MatchValue):
        rows = index.match_value(node.value)
    elif isinstance(node, MatchAny):
        rows = index.match_any(node.values)
    else:
        rows = index.range(node.gt, node.gte, node.lt, node.lte)
    out = np.zeros_like(cand)
    out[rows[rows < n]] = True
    # Rows holding values this index does not cover: decided from the payload itself.
    residual = index.residual_rows()
    residual = residual[residual < n]
    if len(residual):
        res_mask = np.zeros_like(cand)
        res_mask[residual] = True
        out |= _scan(node, view, res_mask & cand)
    return out & cand


# ---- parsing ------------------------------------------------------------------------------
def parse_filter(obj: Any, *, path: str = "filter") -> Filter | None:
    """Validate a filter (JSON already decoded); None for no filter. Raises InvalidFilterError."""
    if obj is None:
        return None
    return _Parser().filter(obj, path, 1)


def _fail(path: str, reason: str) -> InvalidFilterError:
    return InvalidFilterError(
        f"invalid filter at {path}: {reason}", {"path": path, "reason": reason}
    )


def child(path: str, name: Any) -> str:
    """The path of a member: a.b for names, a["x y"] otherwise (so the path stays readable)."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return f"{path}.{name}"
    text = name if isinstance(name, str) else repr(name)
    return f"{path}[{json.dumps(text[:64], ensure_ascii=False)}]"


class _Parser:
    def __init__(self) -> None:
        self.conditions = 0

    def filter(self, obj: Any, path: str, depth: int) -> Filter:
        if not isinstance(obj, dict):
            raise _fail(path, "a filter must be an object with must, should, must_not")
        if depth > MAX_DEPTH:
            raise _fail(path, f"filters nest at most {MAX_DEPTH} levels")
        for k in obj:
            if k not in _CLAUSES:
                raise _fail(child(path, k), "unknown key; a filter has must, should, must_not")
        clauses: dict[str, tuple[Condition, ...]] = {}
        for name in _CLAUSES:
            raw = obj.get(name)
            if raw is None:
                continue
            p = f"{path}.{name}"
            if not isinstance(raw, list):
                raise _fail(p, "must be a list of conditions")
            clauses[name] = tuple(self.condition(c, f"{p}[{i}]", depth) for i, c in enumerate(raw))
        return Filter(**clauses)

    def condition(self, obj: Any, path: str, depth: int) -> Condition:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise _fail(path, f"a filter holds at most {MAX_CONDITIONS} conditions")
        if not isinstance(obj, dict):
            raise _fail(path, "a condition must be an object")
        if "key" in obj:
            return self.field(obj, path)
        if "has_id" in obj:
            return self.has_id(obj, path)
        for k in obj:
            if k not in _CLAUSES:
                reason = "unknown key; a condition has key, has_id, or must/should/must_not"
                raise _fail(child(path, k), reason)
        return self.filter(obj, path, depth + 1)

    def field(self, obj: dict[str, Any], path: str) -> FieldCondition:
        for k in obj:
            if k != "key" and k not in _OPERATORS:
                reason = "unknown key; a field condition has key and one of match, range, is_null"
                raise _fail(child(path, k), reason)
        parts = split_key(obj["key"])
        if isinstance(parts, str):
            raise _fail(f"{path}.key", parts)
        ops = [k for k in _OPERATORS if k in obj]
        if not ops:
            raise _fail(path, "a field condition needs one of match, range, is_null")
        if len(ops) > 1:
            raise _fail(f"{path}.{ops[1]}", "only one of match, range, is_null per condition")
        op, p = ops[0], f"{path}.{ops[0]}"
        if op == "match":
            return self.match(parts, obj["match"], p)
        if op == "range":
            return self.range(parts, obj["range"], p)
        if obj["is_null"] is not True:
            raise _fail(p, "is_null must be true (negate it with must_not)")
        return IsNull(parts)

    def match(self, key: tuple[str, ...], m: Any, path: str) -> MatchValue | MatchAny:
        if not isinstance(m, dict):
            raise _fail(path, 'match must be an object: {"value": ...} or {"any": [...]}')
        for k in m:
            if k not in ("value", "any"):
                raise _fail(child(path, k), "unknown key; match has value or any")
        if "value" in m and "any" in m:
            raise _fail(f"{path}.any", "match has value or any, not both")
        if "value" in m:
            return MatchValue(key, _scalar(m["value"], f"{path}.value"))
        if "any" not in m:
            raise _fail(path, "match needs value or any")
        vs = m["any"]
        if not isinstance(vs, list):
            raise _fail(f"{path}.any", "any must be a list")
        if len(vs) > MAX_VALUES:
            raise _fail(f"{path}.any", f"any holds at most {MAX_VALUES} values")
        return MatchAny(key, tuple(_scalar(v, f"{path}.any[{i}]") for i, v in enumerate(vs)))

    def range(self, key: tuple[str, ...], r: Any, path: str) -> Range:
        if not isinstance(r, dict):
            raise _fail(path, "range must be an object with gt, gte, lt, lte")
        for k in r:
            if k not in _BOUNDS:
                raise _fail(child(path, k), "unknown key; range has gt, gte, lt, lte")
        bounds = {k: _number(r[k], f"{path}.{k}") for k in _BOUNDS if r.get(k) is not None}
        if not bounds:
            raise _fail(path, "range needs at least one of gt, gte, lt, lte")
        return Range(key, **bounds)

    def has_id(self, obj: dict[str, Any], path: str) -> HasId:
        for k in obj:
            if k != "has_id":
                raise _fail(child(path, k), "unknown key; a has_id condition has only has_id")
        ids, p = obj["has_id"], f"{path}.has_id"
        if not isinstance(ids, list):
            raise _fail(p, "has_id must be a list of ids")
        if len(ids) > MAX_VALUES:
            raise _fail(p, f"has_id holds at most {MAX_VALUES} ids")
        for i, mid in enumerate(ids):
            if not isinstance(mid, str):
                raise _fail(f"{p}[{i}]", "an id is a string")
        return HasId(frozenset(ids))


def _int64(v: int, path: str) -> int:
    if not INT64_MIN <= v <= INT64_MAX:
        raise _fail(path, "integers in a filter must fit 64 bits")
    return int(v)  # an int subclass becomes a plain int: its kind is then "int"


def _scalar(v: Any, path: str) -> Scalar:
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return _int64(v, path)
    if isinstance(v, float):
        raise _fail(path, "floats cannot be matched exactly; use a range")
    if v is None:
        raise _fail(path, "null is not a match value; use is_null")
    raise _fail(path, "a match value is a string, an integer or a boolean")


def _number(v: Any, path: str) -> Number:
    if isinstance(v, bool):
        raise _fail(path, "a range bound is a number, not a boolean")
    if isinstance(v, int):
        return _int64(v, path)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise _fail(path, "a range bound must be finite")
        return float(v)
    raise _fail(path, "a range bound is a number")
