"""Typed builders of the filter language (docs/API.md "Filters"), like qdrant-client's models.

    from lam_client.filters import FieldCondition, Filter, MatchValue, Range

    f = Filter(
        must=[FieldCondition(key="tenant", match=MatchValue(value="acme"))],
        must_not=[FieldCondition(key="year", range=Range(lt=2020))],
    )
    client.query("notes", cue, filter=f)

Each serializes with `to_dict()` to the API's JSON; a plain dict is accepted wherever a
filter is. The server (or the embedded engine) validates: a malformed filter is a 422
`invalid_filter` whose details name the offending part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

Scalar: TypeAlias = "str | int | bool"

__all__ = [
    "FieldCondition", "Filter", "FilterLike", "HasId", "IsNull", "MatchAny", "MatchValue",
    "Range", "filter_json",
]  # fmt: skip


@dataclass(frozen=True)
class MatchValue:
    """Equality with a string, an integer or a bool (of the same JSON kind)."""

    value: Scalar

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value}


@dataclass(frozen=True)
class MatchAny:
    """One of the values."""

    any: Sequence[Scalar]

    def to_dict(self) -> dict[str, Any]:
        return {"any": list(self.any)}


@dataclass(frozen=True)
class Range:
    """Numeric bounds; at least one."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def to_dict(self) -> dict[str, Any]:
        bounds = {"gt": self.gt, "gte": self.gte, "lt": self.lt, "lte": self.lte}
        return {k: v for k, v in bounds.items() if v is not None}


@dataclass(frozen=True)
class FieldCondition:
    """A condition on the payload value at dotted `key`: one of match and range."""

    key: str
    match: MatchValue | MatchAny | None = None
    range: Range | None = None

    def to_dict(self) -> dict[str, Any]:
        if (self.match is None) == (self.range is None):
            raise ValueError("a FieldCondition takes exactly one of match and range")
        if self.match is not None:
            return {"key": self.key, "match": self.match.to_dict()}
        assert self.range is not None
        return {"key": self.key, "range": self.range.to_dict()}


@dataclass(frozen=True)
class IsNull:
    """The key is missing, or null, or an array holding a null."""

    key: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "is_null": True}


@dataclass(frozen=True)
class HasId:
    """The memory's id is one of these."""

    has_id: Sequence[str]

    def to_dict(self) -> dict[str, Any]:
        return {"has_id": list(self.has_id)}


Condition: TypeAlias = "FieldCondition | IsNull | HasId | Filter | dict[str, Any]"


@dataclass(frozen=True)
class Filter:
    """must: all hold; should: at least one holds (when given); must_not: none holds."""

    must: Sequence[Condition] = field(default_factory=tuple)
    should: Sequence[Condition] = field(default_factory=tuple)
    must_not: Sequence[Condition] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("must", "should", "must_not"):
            conds = getattr(self, name)
            if conds:
                out[name] = [_cond(c) for c in conds]
        return out


FilterLike: TypeAlias = "Filter | dict[str, Any]"


def _cond(c: Any) -> Any:
    return c.to_dict() if hasattr(c, "to_dict") else c


def filter_json(f: FilterLike | None) -> dict[str, Any] | None:
    """The API's JSON of a filter (a builder or a dict); None stays None."""
    return None if f is None else _cond(f)
