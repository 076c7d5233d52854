"""lam_engine: Large Associative Memory (Krotov & Hopfield 2020) as a library.

Open a durable store of named memory banks and retrieve by Model B energy descent:

    >>> from lam_engine import Engine, BankConfig
    >>> engine = Engine.open(None)                  # or a data directory
    >>> _ = engine.create_bank("demo", BankConfig(dim=3))
    >>> _ = engine.upsert("demo", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["x", "y"])
    >>> engine.query("demo", [[0.9, 0.1, 0.0]], beta=8.0).results[0].matches[0].id
    'x'
"""

from .config import BankConfig, PrefilterConfig
from .engine import Engine
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
