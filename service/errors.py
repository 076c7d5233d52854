"""Errors to HTTP responses, in the error envelope of API.md.

Every error body is {"error": {"code", "message", "details"}}. Engine errors (LamError
subclasses) answer with the status their family declares in lam_engine/errors.py; service
errors are ApiError with their own status and code.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from lam_engine.errors import LamError

from .responses import OrjsonResponse

log = logging.getLogger("lam.service")

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "not_ready",
}


class ApiError(Exception):
    """An error the service itself raises (auth, body parsing, limits, readiness)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def status_of(exc: LamError) -> int:
    """The status the error's family declares (lam_engine/errors.py is the one table)."""
    return int(exc.status)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return OrjsonResponse(body, status_code=status, headers=headers)


def validation_details(errors: Any, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors without `input`/`ctx` (which may hold anything, even the whole body)."""
    out = []
    for e in list(errors)[:20]:
        loc = [*prefix, *(str(p) for p in e.get("loc", ()))]
        out.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def validation_error(details: list[dict[str, Any]]) -> ApiError:
    msg = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details[:5])
    return ApiError(422, "validation_error", msg or "invalid request", details)


def pydantic_error(exc: ValidationError, where: str = "body") -> ApiError:
    return validation_error(validation_details(exc.errors(), (where,)))


def _mark(request: Request, code: str) -> None:
    """Leave the error code where the metrics middleware finds it (lam_errors_total)."""
    request.scope.setdefault("state", {})["error_code"] = code


def lam_error_response(request: Request, exc: LamError) -> Response:
    """An engine error as its family's status (lam_engine/errors.py), counted by its code."""
    status = status_of(exc)
    if status == 500:  # a LamError subclass missing from the table is a server bug
        _mark(request, "internal_error")
        return internal_error_response(request_id_of(request.scope), exc)
    _mark(request, exc.code)
    details = exc.details if _is_json_like(exc.details) else None
    # A family that the client should retry later (a shard with no live replica) says when.
    retry = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return error_response(status, exc.code, exc.message, details, headers)


def api_error_response(request: Request, exc: ApiError) -> Response:
    _mark(request, exc.code)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _lam_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LamError)
    return lam_error_response(request, exc)


async def _api_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(request, exc)


async def _request_validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    err = validation_error(validation_details(exc.errors()))
    _mark(request, err.code)
    return error_response(err.status, err.code, err.message, err.details)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    _mark(request, code)
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's Allow names only the first route matching the path; a path template has
        # one route per method, so the answer must gather them all.
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, message, None, headers or None)


def allowed_methods(request: Request) -> list[str]:
    """The methods some route answers at this URL, narrowed as OpenAPI resolves paths: a
    literal segment wins over a parameter (/memories/delete over /memories/{memory_id})."""
    reachable = set()
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(r.matches(probe)[0] is Match.FULL for r in request.app.router.routes):
            reachable.add(method)
    path = request.scope.get("path", "")
    hits = [(n, methods) for rx, n, methods in _templates(request.app) if rx.fullmatch(path)]
    if hits:
        fewest = min(n for n, _ in hits)
        documented = set().union(*(methods for n, methods in hits if n == fewest))
        reachable &= documented | ({"HEAD"} if "GET" in documented else set())
    return sorted(reachable)


def _templates(app: Any) -> list[tuple[re.Pattern[str], int, set[str]]]:
    """(regex, number of parameters, methods) of each path of the OpenAPI document."""
    cached = getattr(app.state, "path_templates", None)
    if cached is None:
        cached = []
        for template, ops in app.openapi().get("paths", {}).items():
            parts = re.split(r"(\{[^}/]+\})", template)
            rx = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            cached.append((re.compile(rx), template.count("{"), {m.upper() for m in ops}))
        app.state.path_templates = cached
    return cached


def request_id_of(scope: Any) -> str:
    return str(scope.get("state", {}).get("request_id", "-"))


def internal_error_response(request_id: str, exc: BaseException) -> Response:
    """500 with only the request id in the body; the traceback goes to the log with that id."""
    log.error("internal error, request_id=%s", request_id, exc_info=exc)
    return error_response(500, "internal_error", "internal error", {"request_id": request_id})


def _is_json_like(value: Any, depth: int = 0) -> bool:
    if depth > 6:
        return False
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v, depth + 1) for k, v in value.items())
    return False


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LamError, _lam_handler)
    app.add_exception_handler(ApiError, _api_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
