"""Per-client rate limit on /v1 routes: 429 `rate_limited` with Retry-After (API.md, Errors).

The client is its API key when the request carries one (a SHA-256 fingerprint of the
Authorization header, never the key itself), else its address. The windows are moving
windows held in this process (limits' MemoryStorage): exact, and lost on restart, which is
what a single-process service wants. Health, readiness and metrics are never limited.
"""

from __future__ import annotations

import hashlib
import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import Scope

from .errors import ApiError


class RateLimiter:
    def __init__(self, spec: str) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @staticmethod
    def client_of(scope: Scope, authorization: bytes | None) -> str:
        if authorization:
            return "key:" + hashlib.sha256(authorization).hexdigest()[:32]
        client = scope.get("client")
        return "addr:" + (client[0] if client else "unknown")

    def check(self, scope: Scope, authorization: bytes | None) -> ApiError | None:
        """None if the request may go on (and is counted), else the 429 to answer."""
        who = self.client_of(scope, authorization)
        for item in self.items:
            if not self._limiter.hit(item, who):
                reset = self._limiter.get_window_stats(item, who).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                return ApiError(
                    429, "rate_limited",
                    f"rate limit of {item} exceeded; retry in {retry} s",
                    {"limit": str(item), "retry_after_s": retry},
                    headers={"Retry-After": str(retry)},
                )  # fmt: skip
        return None
