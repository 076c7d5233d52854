"""create_app(settings) → the FastAPI app: one Engine, its worker pool, routes, errors, metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import lam_engine

from .deps import Runtime
from .errors import install_error_handlers
from .middleware import ServiceMiddleware
from .openapi import install_openapi
from .responses import OrjsonResponse
from .routes import health, v1_routers
from .settings import Settings
from .ui_routes import mount_console

log = logging.getLogger("lam.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an app; its lifespan opens the store in a worker thread and closes it on shutdown.

    The server answers /healthz at once and /readyz with 503 until every bank is loaded;
    /v1 calls get 503 `not_ready` until then.
    """
    settings = settings or Settings()
    rt = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        # Load in the background so health checks answer while big banks load.
        loading = asyncio.ensure_future(rt.start())
        try:
            yield
        finally:
            await loading
            await rt.stop()

    app = FastAPI(
        title="LAM: Large Associative Memory",
        version=lam_engine.__version__,
        description="Retrieval by Model B energy descent (Krotov & Hopfield 2020). See API.md.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.rt = rt
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, rt=rt)
    app.include_router(health.router)
    for router in v1_routers():
        app.include_router(router)
    mount_console(app)
    install_openapi(app, rt)
    return app
