"""The app's runtime (engine, worker pool, batcher, metrics) and typed dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request

from lam_engine import Engine, setup
from lam_engine.errors import LamError

from .auth import KeyTable, require_read, require_write
from .batching import MicroBatcher
from .errors import ApiError
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("lam.service")
T = TypeVar("T")


class Runtime:
    """Everything a request needs; one per app, on app.state.rt."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.keys = KeyTable.parse(settings.api_keys)
        self.engine: Engine | None = None
        self.batcher: MicroBatcher | None = None
        self.ready = False
        self.load_error: str | None = None
        self.bank_lock = asyncio.Lock()  # serializes bank creation against LAM_MAX_BANKS
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking engine call in the worker pool so the event loop stays free."""
        assert self._pool is not None, "runtime not started"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def start(self) -> None:
        s = self.settings
        self._pool = ThreadPoolExecutor(s.worker_threads, thread_name_prefix="lam-worker")
        try:
            await self.run(self._open)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("failed to open the store in %s", s.data_dir)
            return
        assert self.engine is not None
        self.batcher = MicroBatcher(
            self.engine, self.run, self.metrics, window_ms=s.batch_window_ms,
            max_rows=s.batch_max, max_pending=s.max_pending_queries,
        )  # fmt: skip
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: %d bank(s) loaded from %s", len(self.engine.bank_names()), s.data_dir)

    def _open(self) -> None:
        s = self.settings
        # LAM_TORCH_THREADS sizes torch's and FAISS's pools alike (a bare torch call left
        # FAISS on its own default); 0 keeps the libraries' defaults.
        setup(threads=s.torch_threads or None)
        if s.cluster == "ray":
            # The router: banks live on the Ray cluster's nodes. ClusterEngine answers the
            # Engine methods the routes call (and refuses what it cannot do yet, 422).
            from lam_cluster.backend import ClusterEngine

            cluster = ClusterEngine(
                s.data_dir, s.ray_address, chunk_bytes=s.chunk_bytes, observer=self.metrics.cluster
            )
            self.engine = cast(Engine, cluster)
        else:
            self.engine = Engine.open(
                s.data_dir,
                synchronous=s.synchronous,
                default_device=s.device,
                chunk_bytes=s.chunk_bytes,
            )
        # A cluster bank with a shard down (503) must not keep the router from starting.
        with contextlib.suppress(LamError):
            self.metrics.set_banks(self.engine.list_banks())
        self.metrics.set_disk(s.data_dir)

    async def stop(self) -> None:
        """Stop taking work, let queued batches finish, then close the store."""
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher is not None:
            await self.batcher.close()
        if self.engine is not None:
            await self.run(self.engine.close)
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def runtime(request: Request) -> Runtime:
    return request.app.state.rt


# async: a plain def dependency would cost a thread-pool hop on every request.
async def ready_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    if not rt.ready or rt.engine is None:
        raise ApiError(
            503,
            "not_ready",
            "the service is starting or shutting down",
            headers={"Retry-After": "1"},
        )
    return rt


RtDep = Annotated[Runtime, Depends(ready_runtime)]
READ = [Depends(require_read)]
WRITE = [Depends(require_write)]


def engine_of(rt: Runtime) -> Engine:
    assert rt.engine is not None
    return rt.engine
