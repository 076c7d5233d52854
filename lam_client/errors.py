"""Client-side errors: one class per family of API.md error codes, for HTTP and embedded alike."""

from __future__ import annotations

from typing import Any


class LamClientError(Exception):
    """An error answer of the service (or of the embedded engine, mapped to the same codes).

    `status` is the HTTP status (the one the service would send, in embedded mode), `code`
    the stable snake_case code of API.md, `details` its optional structured details.
    """

    def __init__(
        self, message: str, *, status: int = 0, code: str = "client_error", details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.status else self.code
        return f"{head}: {self.message}"


class BadRequest(LamClientError):
    """400 (malformed body) and 415 (unsupported content type)."""


class Unauthorized(LamClientError):
    """401: missing or invalid API key."""


class Forbidden(LamClientError):
    """403: the key lacks the right (a read key writing)."""


class NotFound(LamClientError):
    """404: unknown bank or memory."""


class Conflict(LamClientError):
    """409: bank exists with another config, empty bank."""


class TooLarge(LamClientError):
    """413: body or batch beyond a limit."""


class InvalidInput(LamClientError):
    """422: a value out of range (dimension, NaN, β ≤ 0, duplicate id...)."""


class RateLimited(LamClientError):
    """429: over the rate limit (retried automatically, honouring Retry-After)."""


class Unavailable(LamClientError):
    """503: not ready or shutting down (retried automatically)."""


class ServerError(LamClientError):
    """5xx other than 503 (507 storage full, 500 with a request id)."""


class ConnectionFailed(LamClientError):
    """No answer: connection refused, timeout, broken connection (after the retries)."""


_BY_STATUS: dict[int, type[LamClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    415: BadRequest,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, code: str, message: str, details: Any = None) -> LamClientError:
    """The LamClientError subclass for an HTTP status (any other 4xx: the base class)."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else LamClientError
    return cls(message, status=status, code=code, details=details)


def from_body(status: int, body: Any, fallback: str = "") -> LamClientError:
    """Build the error from API.md's envelope {"error": {"code", "message", "details"}}."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return error_for(
            status,
            str(err.get("code") or "http_error"),
            str(err.get("message") or fallback),
            err.get("details"),
        )
    return error_for(status, "http_error", fallback or f"HTTP {status}")


__all__ = [
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "InvalidInput",
    "LamClientError",
    "NotFound",
    "RateLimited",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "error_for",
    "from_body",
]
