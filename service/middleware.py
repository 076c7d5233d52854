"""One pure-ASGI middleware: request id, body-size limit, metrics, and the last-resort 500."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import Runtime
from .errors import ApiError, error_response, internal_error_response
from .fastpath import QueryFastPath
from .ratelimit import RateLimiter

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "body_too_large", f"request body exceeds the limit of {limit} bytes",
            {"limit": limit},
        )  # fmt: skip


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        spec = rt.settings.rate_limit
        self.rate_limiter = RateLimiter(spec) if spec else None
        self.fast_query = QueryFastPath(rt)

    def _limit(self, scope: Scope) -> int:
        s = self.rt.settings
        if scope["method"] == "POST" and scope["path"].endswith("/snapshot"):
            return s.max_snapshot_bytes
        return s.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        # 128 random bits as 32 hex digits, the form uuid4().hex had, at a fifth of its cost.
        rid = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        m = self.rt.metrics
        m.inflight.inc()
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        limit = self._limit(scope)
        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        try:
            early = _declared_too_large(headers.get(b"content-length"), limit)
            if early is None and self.rate_limiter and scope["path"].startswith("/v1/"):
                early = self.rate_limiter.check(scope, headers.get(b"authorization"))
            if early is not None:
                await _send_error(early, scope, receive, send_wrapper, state)
            elif (bank := self.fast_query.bank_of(scope)) is not None:
                await self.fast_query(bank, scope, receive_wrapper, send_wrapper)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            if started:  # too late for an error response; the server closes the connection
                internal_error_response(rid, exc)
            elif isinstance(exc, ApiError):
                await _send_error(exc, scope, receive, send_wrapper, state)
            else:
                state["error_code"] = "internal_error"
                await internal_error_response(rid, exc)(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            m.requests.labels(label, method, str(status)).inc()
            m.duration.labels(label, method).observe(time.perf_counter() - start)
            m.inflight.dec()
            code = state.get("error_code")
            if code is None and status >= 400:
                code = f"http_{status}"
            if code is not None:
                m.errors.labels(code).inc()


def _declared_too_large(value: bytes | None, limit: int) -> ApiError | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return ApiError(400, "bad_request", "Content-Length is not an integer")
    return _BodyTooLarge(limit) if length > limit else None


async def _send_error(
    exc: ApiError, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]
) -> None:
    state["error_code"] = exc.code
    response = error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    await response(scope, receive, send)
