"""lam_client: Python SDK and `lam` CLI for the LAM service (HTTP or embedded).

>>> from lam_client import Client
>>> client = Client(path=":memory:")          # embedded; Client("http://host:8000") for HTTP
>>> _ = client.create_bank("demo", dim=3, beta=8.0)
>>> _ = client.store("demo", [[1, 0, 0], [0, 1, 0]], ids=["x", "y"])
>>> client.query("demo", [0.9, 0.1, 0.0])[0].matches[0].id
'x'
"""

from ._version import __version__
from .async_client import AsyncClient
from .client import Client
from .errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    LamClientError,
    NotFound,
    RateLimited,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from .models import (
    Bank,
    Diagnostics,
    DynamicsResult,
    EnergyResult,
    HiddenUnit,
    Match,
    Memory,
    QueryResponse,
    QueryResult,
    ScrollPage,
    Skipped,
    StoreResult,
)

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Bank",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Diagnostics",
    "DynamicsResult",
    "EnergyResult",
    "Forbidden",
    "HiddenUnit",
    "InvalidInput",
    "LamClientError",
    "Match",
    "Memory",
    "NotFound",
    "QueryResponse",
    "QueryResult",
    "RateLimited",
    "ScrollPage",
    "ServerError",
    "Skipped",
    "StoreResult",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "__version__",
]
