"""The filter language (docs/API.md "Filters") as request models: the OpenAPI document only.

Filter fields are `SkipValidation`: the schema documents the language (a recursive JSON
Schema, strict like the rest), while the value goes, as decoded JSON, to
`lam_engine.filters.parse_filter`, the one validator, so that a malformed filter is 422
`invalid_filter` with the path of the offending part rather than a pydantic error. What the
schema cannot say (depth, number of conditions, 64-bit integers, a range's one non-null
bound, an integer written 3.0) is listed in tests/harness/schemathesis_hooks.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SkipValidation,
    StrictBool,
    StrictInt,
    StrictStr,
)

from lam_engine.filters import MAX_VALUES
from lam_engine.payload_values import MAX_KEY_LENGTH

from .openapi_shapes import CURSOR_PATTERN

KEY_PATTERN = r"^[^.]+(\.[^.]+)*$"  # dotted path: no empty segment (payload_values.split_key)
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH, pattern=KEY_PATTERN)]
Scalar = StrictStr | StrictInt | StrictBool
Bound = float | None


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class MatchValueSpec(_Part):
    value: Scalar


class MatchAnySpec(_Part):
    any: list[Scalar] = Field(max_length=MAX_VALUES)


class RangeSpec(_Part):
    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"minProperties": 1}
    )

    gt: Bound = None
    gte: Bound = None
    lt: Bound = None
    lte: Bound = None


class MatchCondition(_Part):
    key: Key
    match: MatchValueSpec | MatchAnySpec


class RangeCondition(_Part):
    key: Key
    range: RangeSpec


class IsNullCondition(_Part):
    key: Key
    is_null: Literal[True]


class HasIdCondition(_Part):
    has_id: list[str] = Field(max_length=MAX_VALUES)


class Filter(_Part):
    """must: all hold; should: at least one holds (when given); must_not: none holds."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"must": [{"key": "tenant", "match": {"value": "acme"}}]}]},
    )

    must: list[Condition] | None = None
    should: list[Condition] | None = None
    must_not: list[Condition] | None = None


Condition = MatchCondition | RangeCondition | IsNullCondition | HasIdCondition | Filter


Filter.model_rebuild()

# A request's filter: documented by the schema above, validated by parse_filter.
FilterField = Annotated[Filter | None, SkipValidation, Field(description="API.md, Filters")]
# Where a filter, once given, cannot be null (delete: exactly one of ids and filter).
GivenFilter = Annotated[Filter, SkipValidation, Field(description="API.md, Filters")]
# Literal of payload_index.INDEX_KINDS (tests/unit/test_filtered_http.py holds them equal).
PayloadIndex = dict[Key, Literal["keyword", "integer", "float", "bool"]]


def _integral(value: Any) -> Any:
    # As schemas.Int (not imported: schemas imports this module): JSON's 3.0 is the integer 3.
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ScrollRequest(_Request):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"filter": {"must": [{"key": "tag", "match": {"value": "x"}}]}, "limit": 10}
            ]
        },
    )

    filter: FilterField = None
    limit: Annotated[int, BeforeValidator(_integral)] = Field(default=100, ge=1, le=1000)
    cursor: Annotated[str, Field(pattern=CURSOR_PATTERN)] | None = None
    with_vectors: bool = False


class CountRequest(_Request):
    filter: FilterField = None


class CountOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    count: int


def delete_one_of(schema: dict[str, Any]) -> None:
    """A delete names its memories by ids or by filter: exactly one of the two."""
    schema["oneOf"] = [{"required": ["ids"]}, {"required": ["filter"]}]
    schema["examples"] = [
        {"ids": ["m1"]},
        {"filter": {"must": [{"key": "tag", "match": {"value": "x"}}]}},
    ]
