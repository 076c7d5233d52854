"""Request and response models of API.md (also the OpenAPI document).

Vector fields are `SkipValidation`: the schema documents them, but the values go through one
numpy conversion (service.bodies) instead of per-float pydantic validation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

Vector = Annotated[list[float], SkipValidation]
Matrix = Annotated[list[list[float]], SkipValidation]
BoolMatrix = Annotated[list[list[bool]] | list[bool], SkipValidation]
BankName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64)]
# β's upper bound is float32's largest value (lam_engine.config.BETA_MAX).
Beta = Annotated[float, Field(gt=0, le=3.4028234663852886e38)]
# Examples point at a 3-dimensional bank "demo" (the docs' and the fuzz tests' sample bank).
BankPath = Annotated[str, Path(description="bank name", examples=["demo"])]
MemoryIdPath = Annotated[str, Path(description="memory id", examples=["m1"])]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": list(examples)}
    )


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- banks ---------------------------------------------------------------------------------
class PrefilterSpec(_Request):
    kind: Literal["none", "flat", "ivf", "hnsw"] = "none"
    k: int = Field(default=256, ge=1, le=1 << 20)
    nlist: int | None = Field(default=None, ge=1, le=1 << 20)
    nprobe: int = Field(default=32, ge=1, le=1 << 20)
    m: int = Field(default=32, ge=2, le=256)
    ef_search: int = Field(default=128, ge=1, le=1 << 16)
    ef_construction: int = Field(default=200, ge=1, le=1 << 16)
    tolerance: float = Field(default=1e-3, gt=0, le=1)
    min_size: int = Field(default=1024, ge=0, le=1 << 40)


class BankCreate(_Request):
    model_config = _examples({"name": "demo", "dim": 3, "beta": 4.0})

    name: BankName
    dim: int = Field(ge=1, le=65536)
    model: Literal["A", "B", "C"] = "B"
    beta: Beta = 1.0
    normalize: bool = False
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    prefilter: PrefilterSpec = Field(default_factory=PrefilterSpec)
    model_params: dict[str, Any] = Field(default_factory=dict)


class BankPatch(_Request):
    model_config = _examples({"beta": 2.0})

    beta: Beta | None = None
    prefilter: PrefilterSpec | None = None


class PrefilterOut(_Response):
    kind: str
    k: int


class BankOut(_Response):
    name: str
    dim: int
    model: str
    beta: float
    normalize: bool
    dtype: str
    device: str
    prefilter: PrefilterOut
    model_params: dict[str, Any]
    count: int
    memory_bytes: int
    created_at: str
    index: dict[str, Any]


class BankList(_Response):
    banks: list[BankOut]


# ---- memories ------------------------------------------------------------------------------
class MemoryIn(_Request):
    id: str | None = Field(default=None, min_length=1, max_length=512)
    vector: Vector
    payload: dict[str, Any] | None = None


class StoreRequest(_Request):
    model_config = _examples(
        {"memories": [{"id": "m1", "vector": [1.0, 0.0, 0.0], "payload": {"tag": "x"}}]}
    )

    memories: Annotated[list[MemoryIn], SkipValidation]


class StoreOut(_Response):
    ids: list[str]
    count: int


class MemoryOut(_Response):
    id: str
    vector: list[float] | None = None
    payload: dict[str, Any] | None = None


class ScrollOut(_Response):
    memories: list[MemoryOut]
    next_cursor: str | None


class DeleteRequest(_Request):
    model_config = _examples({"ids": ["m1"]})

    ids: list[Annotated[str, Field(min_length=1, max_length=512)]]


class DeletedOut(_Response):
    deleted: int


# ---- query ---------------------------------------------------------------------------------
class QueryParams(_Request):
    """Everything of a query but the vectors; also the query-string form for .npy bodies."""

    beta: Beta | None = None
    steps: int = Field(default=1, ge=1, le=10_000)
    tol: float = Field(default=1e-6, ge=0)
    top_k: int = Field(default=5, ge=0, le=100_000)
    with_payload: bool = True
    with_vectors: bool = False
    exact: bool = False


class QueryRequest(QueryParams):
    model_config = _examples({"queries": [[0.9, 0.1, 0.0]], "top_k": 2})

    queries: Matrix
    mask: BoolMatrix | None = None


class MatchOut(_Response):
    id: str
    weight: float
    score: float
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None


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
    model_config = _examples({"states": [[0.9, 0.1, 0.0]], "gradient": True})

    states: Matrix
    beta: Beta | None = None
    constants: bool = False
    gradient: bool = False


class EnergyOut(_Response):
    energies: list[float]
    gradients: list[list[float]] | None = None


class DynamicsRequest(_Request):
    model_config = _examples({"state": [0.9, 0.1, 0.0], "t_max": 0.5})

    state: Vector
    hidden: Vector | None = None
    input: Vector | None = None
    tau_f: float = Field(default=1.0, gt=0)
    tau_h: float = Field(default=0.1, gt=0)
    dt: float = Field(default=0.01, gt=0)
    t_max: float = Field(default=5.0, gt=0)
    record_every: int = Field(default=10, ge=1)
    tol: float = Field(default=1e-5, ge=0)
    top_k: int = Field(default=5, ge=0, le=100_000)


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


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Documented on every /v1 operation: the envelope of API.md, replacing FastAPI's default 422.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _err("Malformed JSON or .npy body"),
    401: _err("Missing or invalid API key"),
    403: _err("The key lacks the needed role"),
    404: _err("Unknown bank or memory"),
    409: _err("Conflict: bank exists with another config, empty bank, too many banks"),
    413: _err("Body or batch beyond a server limit"),
    415: _err("Unsupported Content-Type"),
    422: _err("A value out of range: wrong dimension, NaN/Inf, beta <= 0, empty batch..."),
    429: _err("Over LAM_RATE_LIMIT for this client; Retry-After says when to come back"),
    500: _err("Internal error (carries a request id that is also in the log)"),
    503: _err("Not ready or shutting down"),
    507: _err("The durable store cannot take the write"),
}
