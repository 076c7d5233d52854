"""Frozen configuration dataclasses for banks and their prefilter."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .errors import InvalidParameterError
from .payload_index import validate_index_spec

ModelName = Literal["A", "B", "C"]
DTypeName = Literal["float32", "float16", "bfloat16"]
PrefilterKind = Literal["none", "flat", "ivf", "hnsw"]

BANK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_DIM = 65536
MODELS = ("A", "B", "C")
# Sharded banks (API.md "Sharded banks"): shards K and replicas R per shard.
SHARDS_MAX = 64
REPLICAS_MAX = 5
DTYPES = ("float32", "float16", "bfloat16")
PREFILTER_KINDS = ("none", "flat", "ivf", "hnsw")
# Per-unit hidden functions F of Models A and C (API.md): power xⁿ, rectified max(x,0)ⁿ, exp.
F_KINDS = ("power", "rectified_power", "exp")


def validate_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME_RE.match(name):
        raise InvalidParameterError(
            "bank name must match [a-z0-9][a-z0-9_-]{0,63}", {"name": str(name)[:80]}
        )
    return name


def _positive_finite(name: str, value: float) -> float:
    # numbers.Real: numpy scalars (np.float32 from an array) are as good as Python floats.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"{name} must be a number", {name: repr(value)[:40]})
    if not math.isfinite(value) or value <= 0:
        raise InvalidParameterError(f"{name} must be finite and > 0", {name: value})
    return float(value)


# β must fit the float32 arithmetic of the kernels; larger products are caught at run time.
BETA_MAX = 3.4028234663852886e38


def check_beta(value: Any, default: float | None = None) -> float:
    """The one validator of β: > 0, finite, representable in float32 (typed error otherwise).

    `default` (a bank's β, already valid) stands in for a `value` of None.
    """
    if value is None and default is not None:
        return default
    beta = _positive_finite("beta", value)
    if beta > BETA_MAX:
        raise InvalidParameterError("beta overflows float32 (max 3.4e38)", {"beta": beta})
    return beta


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidParameterError(f"{name} must be an integer in [{lo}, {hi}]", {name: value})
    return int(value)


@dataclass(frozen=True)
class QueryDefaults:
    """Defaults and limits of a query (API.md, "Query"): the one source for the engine,
    the HTTP schemas, the SDK signatures and the CLI options."""

    steps: int = 1
    tol: float = 1e-6
    top_k: int = 5
    with_payload: bool = True
    with_vectors: bool = False
    exact: bool = False
    steps_min: int = 0  # 0: score at the cue (API.md, "Scoring at the cue")
    steps_max: int = 10_000
    top_k_max: int = 100_000


@dataclass(frozen=True)
class DynamicsDefaults:
    """Defaults and limits of `/dynamics` (API.md, "Dynamics")."""

    tau_f: float = 1.0
    tau_h: float = 0.1
    dt: float = 0.01
    t_max: float = 5.0
    record_every: int = 10
    tol: float = 1e-5
    top_k: int = 5
    steps_max: int = 100_000  # t_max/dt integration steps beyond this are refused


@dataclass(frozen=True)
class DiagnosticsDefaults:
    """Defaults and limits of `/diagnostics` (API.md, "Diagnostics")."""

    limit: int = 100
    offset: int = 0
    limit_max: int = 10_000
    # Above this many memories Δ_i comes from the prefilter's top-2 when the bank has one:
    # the exact computation is O(N²·d).
    exact_max: int = 20_000


# The reaper of expired memories (reaper.py) looks at least this often, and at most this
# often (a lifetime ends for reads at its instant; the reaper only reclaims the space).
REAP_MAX_WAIT_S = 1.0
REAP_MIN_WAIT_S = 0.01

QUERY = QueryDefaults()
DYNAMICS = DynamicsDefaults()
DIAGNOSTICS = DiagnosticsDefaults()


@dataclass(frozen=True)
class PrefilterConfig:
    """FAISS candidate prefilter of a bank (kind "none" disables it).

    k candidates go through the exact softmax; if the certified missed-mass bound ε of
    a query exceeds `tolerance`, that query falls back to exact retrieval.
    """

    kind: PrefilterKind = "none"
    k: int = 256
    nlist: int | None = None  # IVF lists; None = about 4·√N at build time
    nprobe: int = 64  # docs/prefilter.md "Defaults and why": recall@5 at d = 384
    m: int = 32  # HNSW neighbours per node
    ef_search: int = 128
    ef_construction: int = 200
    tolerance: float = 1e-3
    min_size: int = 1024  # below this many memories the bank answers exactly

    def validate(self) -> PrefilterConfig:
        if self.kind not in PREFILTER_KINDS:
            raise InvalidParameterError(
                f"prefilter kind must be one of {PREFILTER_KINDS}", {"kind": self.kind}
            )
        _int_in("k", self.k, 1, 1 << 20)
        if self.nlist is not None:
            _int_in("nlist", self.nlist, 1, 1 << 20)
        _int_in("nprobe", self.nprobe, 1, 1 << 20)
        _int_in("m", self.m, 2, 256)
        _int_in("ef_search", self.ef_search, 1, 1 << 16)
        _int_in("ef_construction", self.ef_construction, 1, 1 << 16)
        _int_in("min_size", self.min_size, 0, 1 << 40)
        tol = _positive_finite("tolerance", self.tolerance)
        if tol > 1:
            raise InvalidParameterError("tolerance must be in (0, 1]", {"tolerance": tol})
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PrefilterConfig:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(
                "unknown prefilter fields", {"fields": sorted(str(u) for u in unknown)}
            )
        return cls(**data).validate()


@dataclass(frozen=True)
class BankConfig:
    """Configuration of one memory bank (API.md, POST /v1/banks)."""

    dim: int
    model: ModelName = "B"
    beta: float = 1.0
    normalize: bool = False
    dtype: DTypeName = "float32"
    device: str = "auto"
    prefilter: PrefilterConfig = field(default_factory=PrefilterConfig)
    model_params: dict[str, Any] = field(default_factory=dict)
    # Payload indexes {dotted key: kind} (API.md "Filters"); they only make filters faster.
    payload_index: dict[str, str] = field(default_factory=dict)
    # Row blocks of Ξ by a stable hash of the id, and copies of each (cluster mode only).
    shards: int = 1
    replicas: int = 1
    # Text banks (API.md "Text memories"): {"model": name or model directory}; None: vectors only.
    embedder: dict[str, Any] | None = None
    # Forgetting (API.md): lifetime of memories stored without one; strengths' half-life.
    default_ttl_s: float | None = None
    half_life_s: float | None = None

    def validate(self) -> BankConfig:
        _int_in("dim", self.dim, 1, MAX_DIM)
        _int_in("shards", self.shards, 1, SHARDS_MAX)
        _int_in("replicas", self.replicas, 1, REPLICAS_MAX)
        if self.model not in MODELS:
            raise InvalidParameterError(f"model must be one of {MODELS}", {"model": self.model})
        check_beta(self.beta)
        if not isinstance(self.normalize, bool):
            raise InvalidParameterError("normalize must be a boolean")
        if self.dtype not in DTYPES:
            raise InvalidParameterError(f"dtype must be one of {DTYPES}", {"dtype": self.dtype})
        if not isinstance(self.device, str) or not re.match(
            r"^(auto|cpu|cuda(:\d+)?)$", self.device
        ):
            raise InvalidParameterError(
                'device must be "auto", "cpu", "cuda" or "cuda:N"', {"device": self.device}
            )
        self.prefilter.validate()
        validate_model_params(self.model, self.model_params)
        validate_index_spec(self.payload_index)
        validate_embedder(self.embedder)
        for name in ("default_ttl_s", "half_life_s"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _positive_finite(name, value))
        return self

    def with_changes(self, **changes: Any) -> BankConfig:
        return replace(self, **changes).validate()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prefilter"] = self.prefilter.to_dict()
        out["model_params"] = dict(self.model_params)
        out["payload_index"] = dict(self.payload_index)
        if self.embedder is None:
            # Left out, not null: a store or snapshot of a vector bank stays readable by code
            # that predates text banks (it refuses unknown config fields).
            del out["embedder"]
        else:
            out["embedder"] = dict(self.embedder)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BankConfig:
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(
                "unknown bank config fields", {"fields": sorted(str(u) for u in unknown)}
            )
        data["prefilter"] = PrefilterConfig.from_dict(data.get("prefilter"))
        data["model_params"] = dict(data.get("model_params") or {})
        data["payload_index"] = validate_index_spec(data.get("payload_index"))
        return cls(**data).validate()


EMBEDDER_MODEL_MAX = 4096  # characters of a model name or directory path


def validate_embedder(spec: Any) -> None:
    """A text bank's embedder: {"model": a non-empty string} (whether it loads is checked
    where it is loaded: lam_engine.texts)."""
    if spec is None:
        return
    if not isinstance(spec, dict) or set(spec) != {"model"}:
        raise InvalidParameterError('embedder must be an object {"model": "<name or path>"}')
    model = spec["model"]
    if not isinstance(model, str) or not 0 < len(model) <= EMBEDDER_MODEL_MAX:
        raise InvalidParameterError(
            f"embedder.model must be a string of 1 to {EMBEDDER_MODEL_MAX} characters"
        )


def validate_model_params(model: str, params: dict[str, Any]) -> None:
    """Model params: B takes none; A and C take F ∈ F_KINDS, power n ≥ 1, C also alpha > 0."""
    if not isinstance(params, dict):
        raise InvalidParameterError("model_params must be an object")
    allowed = {
        "A": {"F", "power", "activation"},
        "B": set(),
        "C": {"F", "power", "alpha", "activation"},
    }
    unknown = set(params) - allowed[model]
    if unknown:
        raise InvalidParameterError(
            f"unknown model_params for model {model}", {"fields": sorted(map(str, unknown))}
        )
    if "F" in params and params["F"] not in F_KINDS:
        raise InvalidParameterError(f"model_params.F must be one of {F_KINDS}", {"F": params["F"]})
    if "power" in params:
        _int_in("power", params["power"], 1, 64)
    if "alpha" in params:
        _positive_finite("alpha", params["alpha"])
    expected_activation = {"A": "sign", "C": "spherical"}.get(model)
    if "activation" in params and params["activation"] != expected_activation:
        raise InvalidParameterError(
            f"model {model} uses activation {expected_activation!r}",
            {"activation": params["activation"]},
        )


def hidden_function(params: dict[str, Any]) -> tuple[str, int]:
    """(F kind, power) with defaults: the rectified cubic of Krotov & Hopfield (2016)."""
    return str(params.get("F", "rectified_power")), int(params.get("power", 3))
