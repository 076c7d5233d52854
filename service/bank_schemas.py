"""Request and response models of the bank and cluster endpoints (API.md "Banks",
"Sharded banks"); the base models and field types are schemas.py's."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from lam_engine.config import (
    EMBEDDER_MODEL_MAX,
    MAX_DIM,
    REPLICAS_MAX,
    SHARDS_MAX,
    BankConfig,
    PrefilterConfig,
)

from .filter_schemas import PayloadIndex
from .openapi_shapes import bank_create_schema
from .schemas import (
    BankName,
    Beta,
    Int,
    Seconds,
    _examples,
    _integral,
    _Request,
    _Response,
)

_PF = PrefilterConfig()
_BANK: dict[str, Any] = {f.name: f.default for f in fields(BankConfig)}


class PrefilterSpec(_Request):
    # Bounds: PrefilterConfig.validate (tests/api/test_api_openapi.py holds them equal).
    kind: Literal["none", "flat", "ivf", "hnsw"] = _PF.kind
    k: Int = Field(default=_PF.k, ge=1, le=1 << 20)
    # annotated_types, not Field: pydantic keeps Field bounds out of a union member's schema.
    nlist: Annotated[int, Ge(1), Le(1 << 20), BeforeValidator(_integral)] | None = _PF.nlist
    nprobe: Int = Field(default=_PF.nprobe, ge=1, le=1 << 20)
    m: Int = Field(default=_PF.m, ge=2, le=256)
    ef_search: Int = Field(default=_PF.ef_search, ge=1, le=1 << 16)
    ef_construction: Int = Field(default=_PF.ef_construction, ge=1, le=1 << 16)
    tolerance: float = Field(default=_PF.tolerance, gt=0, le=1)
    min_size: Int = Field(default=_PF.min_size, ge=0, le=1 << 40)


class EmbedderSpec(_Request):
    model: str = Field(
        min_length=1, max_length=EMBEDDER_MODEL_MAX, examples=["all-MiniLM-L6-v2"],
        description='"all-MiniLM-L6-v2" or a sentence-transformers model directory',
    )  # fmt: skip


class BankCreate(_Request):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra=bank_create_schema({"name": "demo", "dim": 3, "beta": 4.0}),
    )

    name: BankName
    # Required but for a text bank (then the model's); normalize: null = true for a text
    # bank, false otherwise (lam_engine.texts.text_bank_config).
    dim: Int | None = Field(default=None, ge=1, le=MAX_DIM)
    model: Literal["A", "B", "C"] = _BANK["model"]
    beta: Beta = _BANK["beta"]
    normalize: bool | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = _BANK["dtype"]
    device: str = Field(default=_BANK["device"], pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    prefilter: PrefilterSpec = Field(default_factory=PrefilterSpec)
    model_params: dict[str, Any] = Field(default_factory=dict)
    payload_index: PayloadIndex = Field(default_factory=dict)
    shards: Int = Field(default=_BANK["shards"], ge=1, le=SHARDS_MAX)
    replicas: Int = Field(default=_BANK["replicas"], ge=1, le=REPLICAS_MAX)
    embedder: EmbedderSpec | None = None
    default_ttl_s: Seconds | None = None  # API.md "Forgetting": lifetime of memories without one
    half_life_s: Seconds | None = None  # strengths fade with this half-life

    @field_validator("model_params")
    @classmethod
    def _integral_power(cls, params: dict[str, Any]) -> dict[str, Any]:
        # lam_engine.config checks the rest; only the JSON spelling 3.0 is settled here.
        return {**params, "power": _integral(params["power"])} if "power" in params else params


class BankPatch(_Request):
    model_config = _examples({"beta": 2.0})

    beta: Beta | None = None
    prefilter: PrefilterSpec | None = None
    payload_index: PayloadIndex | None = None
    # Left out: unchanged; null: cleared. A new half-life applies to every memory from its
    # t_μ (as if it had always been in force; docs/forgetting.md).
    default_ttl_s: Seconds | None = None
    half_life_s: Seconds | None = None


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
    shards: int
    replicas: int
    embedder: dict[str, Any] | None = None
    default_ttl_s: float | None = None
    half_life_s: float | None = None
    count: int
    memory_bytes: int
    created_at: str
    index: dict[str, Any]


class BankList(_Response):
    banks: list[BankOut]


# ---- cluster (API.md "Sharded banks") ------------------------------------------------------
class ClusterNode(_Response):
    node_id: str
    address: str
    alive: bool


class ReplicaOut(_Response):
    node_id: str
    state: Literal["active", "catching_up", "dead"]


class ShardOut(_Response):
    shard: int
    replicas: list[ReplicaOut]


class ClusterBank(_Response):
    name: str
    shards: list[ShardOut]


class ClusterOut(_Response):
    nodes: list[ClusterNode]
    banks: list[ClusterBank]


# ---- memories ------------------------------------------------------------------------------
