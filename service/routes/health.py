"""Liveness, readiness and the Prometheus scrape endpoint (outside /v1, no auth by default)."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from lam_engine.errors import LamError

from ..auth import require_read
from ..deps import Runtime, runtime
from ..errors import error_response
from ..responses import OrjsonResponse
from ..schemas import ErrorOut, Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status)
async def healthz() -> Response:
    return OrjsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Status,
    responses={503: {"model": ErrorOut, "description": "Loading, failed to load, or stopping"}},
)
async def readyz(request: Request) -> Response:
    rt: Runtime = runtime(request)
    if rt.ready:
        return OrjsonResponse({"status": "ready"})
    if rt.load_error:
        return error_response(503, "load_failed", "the store failed to load; see the log")
    return error_response(
        503, "not_ready", "loading banks or shutting down", headers={"Retry-After": "1"}
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Prometheus text format"},
               401: {"model": ErrorOut, "description": "Missing key (LAM_METRICS_AUTH=true)"}},
)  # fmt: skip
async def metrics(request: Request) -> Response:
    rt: Runtime = runtime(request)
    if rt.settings.metrics_auth:
        await require_read(request)
    if rt.ready and rt.engine is not None:
        # Bank gauges come fresh from the engine at scrape time (and after bank changes);
        # a bank that cannot be described now (a cluster shard with no live replica, 503)
        # keeps its last values, and the rest still scrapes.
        with contextlib.suppress(LamError):
            rt.metrics.set_banks(await rt.run(rt.engine.list_banks))
        rt.metrics.set_disk(rt.settings.data_dir)
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
