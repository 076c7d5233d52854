"""lam_engine: Large Associative Memory (Krotov & Hopfield 2020) as a library.

Open a durable store of named memory banks and retrieve by Model B energy descent:

    >>> from lam_engine import Engine, BankConfig
    >>> engine = Engine.open(None)                  # or a data directory
    >>> _ = engine.create_bank("demo", BankConfig(dim=3))
    >>> _ = engine.upsert("demo", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["x", "y"])
    >>> engine.query("demo", [[0.9, 0.1, 0.0]], beta=8.0).results[0].matches[0].id
    'x'
"""

import importlib
from typing import TYPE_CHECKING, Any

# config and errors are plain Python: the SDK reads its defaults and error families from
# them without paying for torch and FAISS. Everything else loads on first use (PEP 562).
from .config import BankConfig, PrefilterConfig
from .errors import (
    BankExistsError,
    BankNotFoundError,
    ConflictError,
    DeviceUnavailableError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyBankError,
    EmptyBatchError,
    InvalidInputError,
    InvalidParameterError,
    LamError,
    LimitExceededError,
    MemoryNotFoundError,
    NonconvexLagrangianError,
    NonFiniteError,
    NotFoundError,
    SnapshotFormatError,
    StorageError,
)

if TYPE_CHECKING:
    from .engine import Engine
    from .inputs import QueryInput
    from .results import (
        BankInfo,
        DiagnosticsResult,
        DynamicsResult,
        EnergyResult,
        Match,
        MemoryRecord,
        QueryBatchResult,
        QueryResult,
        UpsertResult,
    )
    from .runtime import setup

_LAZY = {
    "Engine": "engine",
    "QueryInput": "inputs",
    "setup": "runtime",
    **dict.fromkeys(
        (
            "BankInfo", "DiagnosticsResult", "DynamicsResult", "EnergyResult", "Match",
            "MemoryRecord", "QueryBatchResult", "QueryResult", "UpsertResult",
        ),
        "results",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lam_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "BankConfig",
    "BankExistsError",
    "BankInfo",
    "BankNotFoundError",
    "ConflictError",
    "DeviceUnavailableError",
    "DiagnosticsResult",
    "DimensionMismatchError",
    "DuplicateIdError",
    "DynamicsResult",
    "EmptyBankError",
    "EmptyBatchError",
    "EnergyResult",
    "Engine",
    "InvalidInputError",
    "InvalidParameterError",
    "LamError",
    "LimitExceededError",
    "Match",
    "MemoryNotFoundError",
    "MemoryRecord",
    "NonFiniteError",
    "NonconvexLagrangianError",
    "NotFoundError",
    "PrefilterConfig",
    "QueryBatchResult",
    "QueryInput",
    "QueryResult",
    "SnapshotFormatError",
    "StorageError",
    "UpsertResult",
    "__version__",
    "setup",
]
