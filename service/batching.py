"""Micro-batching: concurrent queries to one bank with the same parameters become one engine call.

One owner task per queue (as in text-embeddings-inference's queue.rs): it stacks the waiting
rows, runs one `engine.query` in the worker pool and hands each request its own row range.
top_k may differ: the call uses the largest and each request keeps its own first top_k
matches. The owner waits up to `window_ms` after the first request (or until `max_rows` rows
are waiting) only while another engine call is computing: with the engine idle a lone
request goes out at once, so batching adds no latency at one client.

Admission is bounded: at most `max_pending` requests wait or compute in the process; the
next one is refused with 503 `overloaded` and Retry-After (the SDK retries it) instead of
joining an unbounded queue whose memory and latency grow without limit.

Requests are validated before they are queued (shape, finiteness, mask), so a bad request
cannot poison a batch; if a merged call still fails, each request is rerun alone and gets
its own answer or error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lam_engine import Engine
from lam_engine.errors import (
    DimensionMismatchError,
    EmptyBatchError,
    InvalidInputError,
    NonFiniteError,
)

from .errors import ApiError
from .metrics import Metrics

log = logging.getLogger("lam.service")
Runner = Callable[..., Awaitable[Any]]
QueryOut = dict[str, Any]
# One batch of a queue computes at a time while the next one gathers. Two in flight split the
# waiting requests into small batches that fight over the same cores (measured at 64 clients,
# N = 10⁵ × 384: 7 rows per engine call and 159 req/s with two, 25 rows and 255 req/s with one).
# The owner must also outlive its in-flight batch (see _owner): 7.4 → 32 rows, 149 → 243 req/s.
_INFLIGHT_PER_QUEUE = 1


@dataclass(frozen=True)
class BatchKey:
    """Requests merge only when everything but the rows and top_k agrees."""

    bank: str
    dim: int
    masked: bool  # an all-true mask clamps every feature, so masked and unmasked never mix
    beta: float | None
    steps: int
    tol: float
    with_payload: bool
    with_vectors: bool
    exact: bool


@dataclass
class _Item:
    queries: np.ndarray  # (b, d) float32
    mask: np.ndarray | None  # (b, d) bool
    top_k: int
    future: asyncio.Future[QueryOut]
    t0: float

    @property
    def rows(self) -> int:
        return int(self.queries.shape[0])


@dataclass
class _Queue:
    items: deque[_Item] = field(default_factory=deque)
    rows: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(_INFLIGHT_PER_QUEUE))


def prepare_rows(
    queries: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shape/finiteness/mask checks done before queueing; rows as float32, mask as (b, d)."""
    if queries.ndim != 2:
        if queries.size == 0:
            raise EmptyBatchError("queries must not be empty")
        raise InvalidInputError(
            "queries must be a 2-D array (B × dim)", {"shape": list(queries.shape)}
        )
    if queries.shape[0] == 0:
        raise EmptyBatchError("queries must not be empty")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        rows = queries.astype(np.float32, copy=False)
    if not np.isfinite(rows).all():
        raise NonFiniteError("queries contain NaN or Inf (or overflow float32)")
    if mask is None:
        return rows, None
    b, d = rows.shape
    if mask.ndim == 1:
        mask = mask[None, :]
    if mask.ndim != 2 or mask.shape[1] != d or mask.shape[0] not in (1, b):
        raise DimensionMismatchError(
            f"mask must be 1 × {d} or {b} × {d}", {"shape": list(mask.shape)}
        )
    return rows, np.broadcast_to(mask, (b, d))


class MicroBatcher:
    def __init__(
        self,
        engine: Engine,
        run: Runner,
        metrics: Metrics,
        *,
        window_ms: float,
        max_rows: int,
        max_pending: int,
    ) -> None:
        self.engine = engine
        self.run = run
        self.metrics = metrics
        self.window = window_ms / 1000.0
        self.max_rows = max_rows
        self.max_pending = max_pending
        self._pending = 0  # requests admitted and not yet answered
        self._computing = 0  # engine calls in the worker pool right now
        self._queues: dict[BatchKey, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def enabled(self) -> bool:
        return self.window > 0

    async def query(
        self, bank: str, queries: np.ndarray, mask: np.ndarray | None, params: dict[str, Any]
    ) -> QueryOut:
        """One request's results as API.md's JSON; params are QueryParams' fields."""
        rows, mask = prepare_rows(queries, mask)
        if self._closing:
            raise ApiError(503, "not_ready", "the service is shutting down")
        self._admit(bank)
        try:
            return await self._query(bank, rows, mask, params)
        finally:
            self._pending -= 1
            self.metrics.query_pending.set(self._pending)

    def _admit(self, bank: str) -> None:
        if self._pending >= self.max_pending:
            self.metrics.query_rejected.labels(bank).inc()
            raise ApiError(
                503, "overloaded",
                f"too many queries in flight ({self.max_pending}); retry shortly",
                {"max_pending": self.max_pending}, headers={"Retry-After": "1"},
            )  # fmt: skip
        self._pending += 1
        self.metrics.query_pending.set(self._pending)

    async def _query(
        self, bank: str, rows: np.ndarray, mask: np.ndarray | None, params: dict[str, Any]
    ) -> QueryOut:
        if not self.enabled or rows.shape[0] >= self.max_rows:
            return await self._compute(bank, rows, mask, params, 1)
        key = BatchKey(
            bank=bank, dim=rows.shape[1], masked=mask is not None, beta=params["beta"],
            steps=params["steps"], tol=params["tol"], with_payload=params["with_payload"],
            with_vectors=params["with_vectors"], exact=params["exact"],
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        item = _Item(rows, mask, params["top_k"], loop.create_future(), loop.time())
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = _Queue()
            self._spawn(self._owner(key, q))
        q.items.append(item)
        q.rows += item.rows
        if q.rows >= self.max_rows:
            q.wake.set()
        return await item.future

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compute(
        self, bank: str, rows: np.ndarray, mask: np.ndarray | None, params: dict[str, Any], n: int
    ) -> QueryOut:
        self._computing += 1
        try:
            return await self.run(self._call, bank, rows, mask, params, n)
        finally:
            self._computing -= 1

    def _call(
        self, bank: str, rows: np.ndarray, mask: np.ndarray | None, params: dict[str, Any], n: int
    ) -> QueryOut:
        """Worker thread: one engine call, converted to JSON shape and counted."""
        kwargs = {
            k: params[k]
            for k in ("beta", "steps", "tol", "top_k", "with_payload", "with_vectors", "exact")
        }
        out = self.engine.query(bank, rows, mask=mask, **kwargs).to_dict()
        self.metrics.observe_query(bank, out, n)
        return out

    async def _owner(self, key: BatchKey, q: _Queue) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Waiting here for the batch in flight keeps this queue registered, so the
                # requests that arrive meanwhile join it and go out together in the next
                # batch; leaving as soon as it was empty let each newcomer open a fresh queue
                # with its own slot: many small batches competing for the same cores.
                await q.slots.acquire()
                if not q.items:
                    q.slots.release()
                    break
                # An idle engine gains nothing from waiting: whoever else is coming would
                # arrive while this batch computes and go out together in the next one.
                deadline = q.items[0].t0 + (self.window if self._computing else 0.0)
                while q.rows < self.max_rows and (remaining := deadline - loop.time()) > 0:
                    q.wake.clear()
                    try:
                        await asyncio.wait_for(q.wake.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
                batch = self._take(q)
                if not batch:
                    q.slots.release()
                    continue
                self._spawn(self._run_batch(key, q, batch))
        finally:
            if self._queues.get(key) is q:
                del self._queues[key]
            for item in q.items:  # only left behind if the owner was cancelled
                if not item.future.done():
                    item.future.set_exception(ApiError(503, "not_ready", "shutting down"))

    def _take(self, q: _Queue) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while q.items and (not batch or rows + q.items[0].rows <= self.max_rows):
            item = q.items.popleft()
            q.rows -= item.rows
            if item.future.done():  # its client went away
                continue
            batch.append(item)
            rows += item.rows
        return batch

    async def _run_batch(self, key: BatchKey, q: _Queue, batch: list[_Item]) -> None:
        try:
            await self._merged(key, batch)
        except BaseException as exc:  # never leave a request hanging
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            q.slots.release()

    async def _merged(self, key: BatchKey, batch: list[_Item]) -> None:
        params = {
            "beta": key.beta, "steps": key.steps, "tol": key.tol,
            "top_k": max(item.top_k for item in batch), "with_payload": key.with_payload,
            "with_vectors": key.with_vectors, "exact": key.exact,
        }  # fmt: skip
        rows = (
            np.concatenate([item.queries for item in batch]) if len(batch) > 1 else batch[0].queries
        )
        mask = None
        if key.masked:
            mask = np.concatenate([item.mask for item in batch])
        try:
            out = await self._compute(key.bank, rows, mask, params, len(batch))
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0], exc=exc)
                return
            log.debug("merged query of %d requests failed (%s); rerunning each", len(batch), exc)
            await asyncio.gather(*(self._alone(key.bank, item, params) for item in batch))
            return
        start = 0
        for item in batch:
            _resolve(item, _slice(out, start, item.rows, item.top_k))
            start += item.rows

    async def _alone(self, bank: str, item: _Item, params: dict[str, Any]) -> None:
        own = {**params, "top_k": item.top_k}
        try:
            _resolve(item, await self._compute(bank, item.queries, item.mask, own, 1))
        except Exception as exc:
            _resolve(item, exc=exc)

    async def close(self) -> None:
        """Let queued and running batches finish (shutdown drains, it does not drop)."""
        self._closing = True
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _slice(out: QueryOut, start: int, rows: int, top_k: int) -> QueryOut:
    results = out["results"][start : start + rows]
    for r in results:
        if len(r["matches"]) > top_k:
            r["matches"] = r["matches"][:top_k]
    if any("missed_mass_bound" in r for r in results):
        prefiltered = any(r.get("prefiltered", False) for r in results)
    else:
        prefiltered = bool(out["prefiltered"])
    return {"results": results, "prefiltered": prefiltered}


def _resolve(item: _Item, out: QueryOut | None = None, exc: BaseException | None = None) -> None:
    if item.future.done():
        return
    if exc is not None:
        item.future.set_exception(exc)
    else:
        item.future.set_result(out)  # type: ignore[arg-type]
