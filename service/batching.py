"""Micro-batching: concurrent queries to one bank with the same parameters become one engine call.

One owner task per queue (as in text-embeddings-inference's queue.rs): it stacks the waiting
rows, runs one `engine.query` in the worker pool and hands each request its own row range.
top_k may differ: the call uses the largest and each request keeps its own first top_k
matches. The owner waits up to `window_ms` after the first request (or until `max_rows` rows
are waiting) only while another engine call is computing: with the engine idle a lone
request goes out at once, so batching adds no latency at one client. A lone request that
reads little runs on the event loop itself (`_inline`), skipping the worker pool.

Admission is bounded: at most `max_pending` requests wait or compute in the process; the
next one is refused with 503 `overloaded` and Retry-After (the SDK retries it) instead of
joining an unbounded queue whose memory and latency grow without limit.

Requests arrive validated (a `QueryInput`, built at the HTTP boundary), so a bad request
cannot poison a batch; the batch is their `QueryInput.concat`, which the engine trusts. If a
merged call still fails, each request is rerun alone and gets its own answer or error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lam_engine import Engine
from lam_engine.inputs import QueryInput
from lam_engine.locks import LockBusy

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
# A lone query reading at most this much of its bank runs on the event loop (_inline): the
# hop to a worker and back costs ≈ 1-1.7 ms here whatever the pass, and a lone query's pass
# already takes both cores (native.py's threads), so the loop has nothing to do meanwhile
# but read a newcomer, which then waits one pass (≤ ≈ 5-10 ms at this size) for cores it
# could not have had anyway. Measured over HTTP, one client, alternated with the old limit
# of 4 MiB (≈ 0.3 ms of pass): 57 863 × 384 float32 steps 0 p50 6.22 → 4.54 ms, 158 → 214
# req/s; 10⁵ × 384 8.03 → 7.15 ms; 57 863 steps 1 9.45 → 8.97 ms; 16 clients unchanged
# (643 → 657 req/s: `_lone` sends them to the batches). Larger banks keep the hop: a
# multi-second pass must not hold up /healthz and the writes' parsing.
INLINE_MAX_BYTES = 256 << 20
# Loop iterations a request yields before it counts as alone (_lone).
INLINE_YIELDS = 3


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
    filter: str | None = None  # its repr (Filter equality takes 1 == True; repr does not)

    @classmethod
    def of(cls, bank: str, q: QueryInput) -> BatchKey:
        return cls(
            bank=bank, dim=q.dim, masked=q.mask is not None, beta=q.beta, steps=q.steps,
            tol=q.tol, with_payload=q.with_payload, with_vectors=q.with_vectors, exact=q.exact,
            filter=None if q.filter is None else repr(q.filter),
        )  # fmt: skip


@dataclass
class _Item:
    q: QueryInput
    future: asyncio.Future[QueryOut]
    t0: float

    @property
    def rows(self) -> int:
        return self.q.batch


@dataclass
class _Queue:
    items: deque[_Item] = field(default_factory=deque)
    rows: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(_INFLIGHT_PER_QUEUE))


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

    async def query(self, bank: str, q: QueryInput) -> QueryOut:
        """One request's results as API.md's JSON shape (state vectors as numpy arrays)."""
        if self._closing:
            raise ApiError(503, "not_ready", "the service is shutting down")
        self._admit(bank)
        try:
            return await self._query(bank, q)
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

    async def _query(self, bank: str, q: QueryInput) -> QueryOut:
        if (
            self._pending == 1
            and not self._computing
            and self.engine.reads_little(bank, q, INLINE_MAX_BYTES)
            and await self._lone()
        ):
            out = self._inline(bank, q)
            if out is not None:
                return out
        if not self.enabled or q.batch >= self.max_rows:
            return await self._compute(bank, q, 1)
        key = BatchKey.of(bank, q)
        loop = asyncio.get_running_loop()
        item = _Item(q, loop.create_future(), loop.time())
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
            self._spawn(self._owner(key, queue))
        queue.items.append(item)
        queue.rows += item.rows
        if queue.rows >= self.max_rows:
            queue.wake.set()
        return await item.future

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compute(self, bank: str, q: QueryInput, n: int) -> QueryOut:
        self._computing += 1
        try:
            return await self.run(self._call, bank, q, n)
        finally:
            self._computing -= 1

    async def _lone(self) -> bool:
        """Whether this request is the only one admitted and no engine call is computing,
        after letting the event loop start what has already arrived: a request whose bytes
        are read in the next loop iteration reaches `_admit` in the one after (uvicorn
        parses in the protocol callback and runs the app in a new task), so a burst shows
        itself within INLINE_YIELDS iterations and goes to the batches instead."""
        for _ in range(INLINE_YIELDS):
            if self._pending != 1 or self._computing:
                return False
            await asyncio.sleep(0)
        return self._pending == 1 and not self._computing

    def _inline(self, bank: str, q: QueryInput) -> QueryOut | None:
        """A lone light query (`_query` checked both) answered here on the event loop, or None
        when a write holds the bank's lock (then the worker pool answers it).

        The hop to a worker thread and back, with the two threads trading the GIL on two
        shared cores, cost ≈ 1 ms per request here (a one-query steps-0 request on a small
        bank: 3.2 → 1.7–1.9 ms of server CPU answered inline), more than a light query's
        compute. Light: `Engine.reads_little` (≤ INLINE_MAX_BYTES of the bank, or a trained
        IVF / HNSW search); it never waits for a write's lock (LockBusy).
        """
        self._computing += 1
        try:
            return self._call(bank, q, 1, blocking=False)
        except LockBusy:
            return None
        finally:
            self._computing -= 1

    def _call(self, bank: str, q: QueryInput, n: int, *, blocking: bool = True) -> QueryOut:
        """Worker thread: one engine call, in JSON shape (arrays left to orjson), counted."""
        res = self.engine.query(bank, q) if blocking else self.engine.query(bank, q, blocking=False)
        out = res.to_dict(arrays=True)
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
        # Validated inputs joined without a second check; top_k is the largest asked for.
        q = QueryInput.concat([item.q for item in batch]) if len(batch) > 1 else batch[0].q
        try:
            out = await self._compute(key.bank, q, len(batch))
        except Exception as exc:
            if len(batch) == 1:
                _resolve(batch[0], exc=exc)
                return
            log.debug("merged query of %d requests failed (%s); rerunning each", len(batch), exc)
            await asyncio.gather(*(self._alone(key.bank, item) for item in batch))
            return
        start = 0
        for item in batch:
            _resolve(item, _slice(out, start, item.rows, item.q.top_k))
            start += item.rows

    async def _alone(self, bank: str, item: _Item) -> None:
        try:
            _resolve(item, await self._compute(bank, item.q, 1))
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
