"""The sans-IO core shared by Client and AsyncClient: request building, retry decisions and
response decoding. Nothing here sends a byte or sleeps; the two transports (client.py and its
generated twin async_client.py) only move bytes and wait as this module tells them.

Retried (up to `retries` times, exponential backoff with full jitter):
- 429 and 503 answers, for every operation: the server refused the request before doing it;
  a `Retry-After` header (seconds, or an HTTP date) sets the wait instead of the backoff.
- connection failures before the request was sent (refused, connect timeout), for every op.
- failures after it was sent (read timeout, dropped connection) only for idempotent
  operations: reads, queries, deletes, bank creation with the same config, and store, which
  is an upsert by id or by content address, so sending the same batch twice stores it once.
  Importing a snapshot without replace=True is the one operation that is not retried then.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from ._ops import Op
from ._version import __version__
from .errors import ConnectionFailed, LamClientError, from_body

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 503})
CHUNK_BYTES = 1 << 20  # snapshot streaming: bounded memory whatever the file size
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY

# How a transport waits between attempts; tests pass a recorder instead.
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]
blocking_sleep: Sleep = time.sleep
async_sleep: AsyncSleep = asyncio.sleep


def default_url(url: str | None) -> str:
    return (url or os.environ.get("LAM_URL") or DEFAULT_URL).rstrip("/")


def default_api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else (os.environ.get("LAM_API_KEY") or None)


def headers(api_key: str | None) -> dict[str, str]:
    out = {"User-Agent": f"lam-client/{__version__}", "Accept": "application/json"}
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def encode(body: Any) -> bytes:
    return orjson.dumps(body, option=_JSON_OPTS)


def request_kwargs(op: Op[Any]) -> dict[str, Any]:
    """`httpx.Client.build_request` arguments for an operation (JSON body, query params)."""
    kw: dict[str, Any] = {"method": op.method, "url": op.path}
    if op.params:
        kw["params"] = {k: _param(v) for k, v in op.params.items()}
    if op.body is not None:
        binary = isinstance(op.body, bytes)
        kw["content"] = op.body if binary else encode(op.body)
        kw["headers"] = {"Content-Type": op.content_type}
    return kw


def snapshot_upload_kwargs(path: str, replace: bool) -> dict[str, Any]:
    """The import request without its body (the transport streams the file as `content`)."""
    return {
        "method": "POST",
        "url": path,
        "params": {"replace": _param(replace)},
        "headers": {"Content-Type": "application/octet-stream"},
    }


def _param(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def decode(response: httpx.Response) -> Any:
    """The JSON answer, or None for an empty (204) one; raise the typed error for a 4xx/5xx."""
    if response.status_code >= 400:
        raise error_of(response)
    if response.status_code == 204 or not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise LamClientError(
            "the server answered with invalid JSON",
            status=response.status_code,
            code="bad_response",
        ) from exc


def error_of(response: httpx.Response) -> LamClientError:
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    text = response.reason_phrase or f"HTTP {response.status_code}"
    return from_body(response.status_code, body, text)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff: float = 0.25  # first wait, doubled per attempt
    backoff_max: float = 8.0
    retry_after_max: float = 60.0  # never sleep longer than this on a server's word

    def retry_status(self, attempt: int, status: int) -> bool:
        return attempt < self.retries and status in RETRY_STATUSES

    def retry_exception(self, attempt: int, exc: Exception, idempotent: bool) -> bool:
        if attempt >= self.retries:
            return False
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return True  # nothing reached the server
        return idempotent and isinstance(exc, httpx.TransportError)

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None:
            after = retry_after(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.retry_after_max)
        cap = min(self.backoff_max, self.backoff * (2**attempt))
        return random.uniform(0, cap)  # full jitter: spread the retries of many clients


@dataclass
class Attempts:
    """The retry decisions of one request, the one copy of the loop's logic: after each failed
    attempt it returns how long to wait before the next, or raises the error to report."""

    policy: RetryPolicy
    idempotent: bool
    url: str
    attempt: int = 0  # failed attempts so far

    def after_exception(self, exc: Exception) -> float:
        if not self.policy.retry_exception(self.attempt, exc, self.idempotent):
            raise connection_failed(exc, self.url) from exc
        return self._next(None)

    def after_error_status(self, response: httpx.Response) -> float:
        """For a 4xx/5xx answer whose body has been read."""
        if not self.policy.retry_status(self.attempt, response.status_code):
            raise error_of(response)
        return self._next(response)

    def _next(self, response: httpx.Response | None) -> float:
        wait = self.policy.delay(self.attempt, response)
        self.attempt += 1
        return wait


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def connection_failed(exc: Exception, url: str) -> ConnectionFailed:
    kind = type(exc).__name__
    return ConnectionFailed(
        f"no answer from {url}: {kind}: {exc}", code="connection_failed", details={"kind": kind}
    )
