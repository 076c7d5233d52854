"""Request and response models of API.md (also the OpenAPI document).

Vector fields are `SkipValidation`: the schema documents them, but the values go through one
numpy conversion (service.bodies) instead of per-float pydantic validation.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SkipValidation

from lam_engine.config import (
    BANK_NAME_RE,
    BETA_MAX,
    DYNAMICS,
    QUERY,
)

from .filter_schemas import FilterField, GivenFilter, delete_one_of
from .openapi_shapes import (
    ID_MAX,
    bool_matrix_schema,
    matrix_schema,
    memories_schema,
    vector_schema,
)
from .text import TEXT_SCHEMA, TEXTS_SCHEMA

# The element bounds and row lengths are in the schema (openapi_shapes); the values are
# checked by one numpy conversion (service.bodies) instead of per-float pydantic validation.
Vector = Annotated[list[float], SkipValidation, Field(json_schema_extra=vector_schema())]
Matrix = Annotated[list[list[float]], SkipValidation, Field(json_schema_extra=matrix_schema())]
BoolMatrix = Annotated[
    list[list[bool]] | list[bool], SkipValidation, Field(json_schema_extra=bool_matrix_schema())
]
Texts = Annotated[list[str], Field(json_schema_extra=TEXTS_SCHEMA)]
BankName = Annotated[str, Field(pattern=BANK_NAME_RE.pattern)]
Beta = Annotated[float, Field(gt=0, le=BETA_MAX)]
# Examples point at a 3-dimensional bank "demo" (the docs' and the fuzz tests' sample bank).
# The pattern is documentation only: a name that cannot exist is simply not found (404).
BankPath = Annotated[
    str,
    Path(
        description="bank name",
        examples=["demo"],
        json_schema_extra={"pattern": BANK_NAME_RE.pattern},
    ),
]
MemoryIdPath = Annotated[
    str, Path(description="memory id", examples=["m1"], min_length=1, max_length=ID_MAX)
]


def _integral(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3, and JSON Schema's "integer" admits it.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict models refuse "3" and true for an integer; this lets 3.0 through as 3.
Int = Annotated[int, BeforeValidator(_integral)]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"examples": list(examples)},
    )


def vector_or_text(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"required": ["vector"]}, {"required": ["text"]}]


def _one_of(vectors: str, *examples: dict[str, Any]) -> ConfigDict:
    """A request with `vectors` (queries, states) or `texts`: exactly one of the two."""

    def extra(schema: dict[str, Any]) -> None:
        schema["oneOf"] = [{"required": [vectors]}, {"required": ["texts"]}]
        schema["examples"] = list(examples)

    return ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra=extra)


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Strength = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Request(BaseModel):
    # Strict: a JSON string is not a number nor a boolean, as the schema says.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- banks ---------------------------------------------------------------------------------
class MemoryIn(_Request):
    # Exactly one of vector and text (text: a text bank's, API.md "Text memories").
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra=vector_or_text
    )

    id: str | None = Field(default=None, min_length=1, max_length=ID_MAX)
    vector: Vector = None  # type: ignore[assignment]
    text: Annotated[str, Field(json_schema_extra=TEXT_SCHEMA)] = None  # type: ignore[assignment]
    payload: dict[str, Any] | None = None
    # API.md "Forgetting": a lifetime (ttl_s or expires_at, not both) and a strength.
    ttl_s: Seconds | None = None
    expires_at: str | None = Field(
        default=None,
        description="RFC 3339 with a zone, in the future",
        json_schema_extra={"format": "date-time"},
    )
    strength: Strength | None = None


class NoveltyGate(_Request):
    # Finite: JSON has no Infinity, and an integer beyond the float range is refused (422).
    energy_above: float = Field(ge=-sys.float_info.max, le=sys.float_info.max, description="τ")


class StoreRequest(_Request):
    model_config = _examples(
        {"memories": [{"id": "m1", "vector": [1.0, 0.0, 0.0], "payload": {"tag": "x"}}]}
    )

    memories: Annotated[list[MemoryIn], SkipValidation, Field(json_schema_extra=memories_schema())]
    if_novel: NoveltyGate | None = Field(
        default=None,
        description="store only the memories whose energy E(ξ) is above τ (API.md, "
        "Novelty-gated store); null or absent: store every memory",
    )


class SkippedOut(_Response):
    index: int = Field(description="the memory's position in the request")
    id: str = Field(description="the id it would have had (its content address if none given)")
    energy: float = Field(description="E(ξ) when it was judged (≤ τ), without constants")
    nearest: str = Field(description="id of the memory with the largest weight at ξ then")


class StoreOut(_Response):
    ids: list[str]
    count: int
    skipped: list[SkippedOut] = Field(
        default_factory=list,
        description="only with if_novel: the memories not stored, in request order",
    )


class MemoryOut(_Response):
    id: str
    vector: list[float] | None = None
    payload: dict[str, Any] | None = None
    text: str | None = None
    strength: float = 1.0
    strength_now: float = 1.0
    stored_at: str | None = None
    reinforced_at: str | None = None
    expires_at: str | None = None


class ReinforceRequest(_Request):
    model_config = _examples({"ids": ["m1"], "strength": None})

    ids: list[Annotated[str, Field(min_length=1, max_length=ID_MAX)]]
    strength: Strength | None = None


class ReinforcedOut(_Response):
    reinforced: int


class ScrollOut(_Response):
    memories: list[MemoryOut]
    next_cursor: str | None


class DeleteRequest(_Request):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra=delete_one_of
    )

    # Neither is nullable: exactly one of the two is given (the route checks it).
    ids: list[Annotated[str, Field(min_length=1, max_length=ID_MAX)]] = None  # type: ignore[assignment]
    filter: GivenFilter = None  # type: ignore[assignment]


class DeletedOut(_Response):
    deleted: int


# ---- query ---------------------------------------------------------------------------------
class QueryParams(_Request):
    """Everything of a query but the vectors; also the query-string form for .npy bodies."""

    beta: Beta | None = None
    steps: Int = Field(default=QUERY.steps, ge=QUERY.steps_min, le=QUERY.steps_max)
    tol: float = Field(default=QUERY.tol, ge=0)
    top_k: Int = Field(default=QUERY.top_k, ge=0, le=QUERY.top_k_max)
    with_payload: bool = QUERY.with_payload
    with_vectors: bool = QUERY.with_vectors
    exact: bool = QUERY.exact


class QueryRequest(QueryParams):
    model_config = _one_of("queries", {"queries": [[0.9, 0.1, 0.0]], "top_k": 2})

    # One of queries and texts (texts: a text bank's, embedded by its model).
    queries: Matrix = None  # type: ignore[assignment]
    texts: Texts = None  # type: ignore[assignment]
    mask: BoolMatrix | None = None
    filter: FilterField = None


class MatchOut(_Response):
    id: str
    weight: float
    score: float
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None
    text: str | None = None


class QueryResultOut(_Response):
    state: list[float]
    steps: int
    converged: bool
    energy: float
    matches: list[MatchOut]
    missed_mass_bound: float | None = None
    prefiltered: bool | None = None


class QueryOut(_Response):
    results: list[QueryResultOut]
    prefiltered: bool


# ---- energy, dynamics, diagnostics ---------------------------------------------------------
class EnergyRequest(_Request):
    model_config = _one_of("states", {"states": [[0.9, 0.1, 0.0]], "gradient": True})

    states: Matrix = None  # type: ignore[assignment]
    texts: Texts = None  # type: ignore[assignment]
    beta: Beta | None = None
    constants: bool = False
    gradient: bool = False
    filter: FilterField = None


class EnergyOut(_Response):
    energies: list[float]
    gradients: list[list[float]] | None = None


class DynamicsRequest(_Request):
    model_config = _examples({"state": [0.9, 0.1, 0.0], "t_max": 0.5})

    state: Vector
    hidden: Vector | None = None
    input: Vector | None = None
    tau_f: float = Field(default=DYNAMICS.tau_f, gt=0)
    tau_h: float = Field(default=DYNAMICS.tau_h, gt=0)
    dt: float = Field(default=DYNAMICS.dt, gt=0)
    t_max: float = Field(default=DYNAMICS.t_max, gt=0)
    record_every: Int = Field(default=DYNAMICS.record_every, ge=1)
    tol: float = Field(default=DYNAMICS.tol, ge=0)
    top_k: Int = Field(default=DYNAMICS.top_k, ge=0, le=QUERY.top_k_max)


class HiddenUnit(_Response):
    id: str
    value: float


class DynamicsOut(_Response):
    times: list[float]
    energy: list[float]
    state: list[float]
    hidden_top: list[HiddenUnit]
    converged: bool
    steps: int | None = None


class DiagnosticsOut(_Response):
    beta: float
    count: int
    M: float | None
    threshold: float | None
    meeting: int
    separable: int
    beta_min: float | None
    failing: list[dict[str, Any]]
    failing_total: int
    next_offset: int | None
    method: str
    separation: dict[str, float | None]


# ---- operations and errors -----------------------------------------------------------------
class Status(_Response):
    status: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorBody


# The envelope of API.md for each status a route can answer with (replacing FastAPI's default
# 422). 401/403/429 depend on the settings: service.openapi adds them where they apply.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON or .npy body",
    401: "Missing or invalid API key",
    403: "The key lacks the needed role",
    404: "Unknown bank or memory",
    409: "Conflict: bank exists with another config, empty bank, too many banks",
    413: "Body or batch beyond a server limit",
    415: "Unsupported Content-Type",
    422: "A value out of range: wrong dimension, NaN/Inf, beta <= 0, empty batch...",
    429: "Over LAM_RATE_LIMIT for this client; Retry-After says when to come back",
    500: "Internal error (carries a request id that is also in the log)",
    503: "Not ready or shutting down",
    507: "The durable store cannot take the write",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


# What every route that reads a JSON body may answer, before the engine is reached.
JSON_BODY = (400, 413, 415, 422)
