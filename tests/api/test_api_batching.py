"""Micro-batching: concurrent queries merge into one engine call and get the same answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from lam_engine.errors import InvalidInputError
from service import Settings, create_app
from service.deps import Runtime

D, N = 8, 24
RNG = np.random.default_rng(7)
XI = RNG.standard_normal((N, D)).astype(np.float32)  # (N, d)


async def _with_app(
    settings: Settings, body: Callable[[httpx.AsyncClient, Runtime], Awaitable[Any]]
) -> Any:
    app: FastAPI = create_app(settings)
    rt: Runtime = app.state.rt
    async with app.router.lifespan_context(app):
        for _ in range(2000):
            if rt.ready:
                break
            await asyncio.sleep(0.005)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/v1/banks", json={"name": "m", "dim": D, "beta": 2.0})
            assert r.status_code == 201
            mems = [
                {"id": f"x{i}", "vector": v.tolist(), "payload": {"i": i}} for i, v in enumerate(XI)
            ]
            r = await client.post("/v1/banks/m/memories", json={"memories": mems})
            assert r.status_code == 200
            return await body(client, rt)


def _no_inline(rt: Runtime) -> Callable[[], None]:
    """Send every query to the worker pool; returns the undo."""
    batcher = rt.batcher
    assert batcher is not None
    batcher._inline = lambda bank, q: None  # type: ignore[method-assign]
    return lambda: vars(batcher).pop("_inline", None)  # type: ignore[no-any-return]


def run(tmp_path: Path, body: Callable[..., Awaitable[Any]], **settings: Any) -> Any:
    return asyncio.run(_with_app(Settings(data_dir=tmp_path, **settings), body))


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Equal up to float rounding: a stacked matmul may round differently from a single row."""
    assert got["prefiltered"] == want["prefiltered"]
    assert len(got["results"]) == len(want["results"])
    for g, w in zip(got["results"], want["results"], strict=True):
        assert np.allclose(g["state"], w["state"], atol=1e-5)
        assert g["energy"] == pytest.approx(w["energy"], abs=1e-5)
        assert [m["id"] for m in g["matches"]] == [m["id"] for m in w["matches"]]
        assert np.allclose(
            [m["weight"] for m in g["matches"]], [m["weight"] for m in w["matches"]], atol=1e-5
        )
        assert [m["payload"] for m in g["matches"]] == [m["payload"] for m in w["matches"]]


def microbatch(rt: Runtime) -> tuple[float, float]:
    reg = rt.metrics.registry
    count = reg.get_sample_value("lam_microbatch_size_count", {"bank": "m"}) or 0.0
    total = reg.get_sample_value("lam_microbatch_size_sum", {"bank": "m"}) or 0.0
    return count, total


def requests(k: int, masked: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(k):
        rows = 1 + i % 3
        body: dict[str, Any] = {
            "queries": RNG.standard_normal((rows, D)).round(3).tolist(),
            "top_k": 1 + i % 5,
            "steps": 2,
        }
        if masked:
            body["mask"] = (RNG.random(D) > 0.3).tolist()
        out.append(body)
    return out


def direct(rt: Runtime, body: dict[str, Any]) -> dict[str, Any]:
    assert rt.engine is not None
    params = {k: v for k, v in body.items() if k != "queries"}
    return rt.engine.query("m", np.asarray(body["queries"]), **params).to_dict()  # type: ignore[no-any-return]


@pytest.mark.parametrize("masked", [False, True])
def test_concurrent_queries_merge_and_match_unbatched(tmp_path: Path, masked: bool) -> None:
    bodies = requests(12, masked=masked)

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        rs = await asyncio.gather(*(client.post("/v1/banks/m/query", json=b) for b in bodies))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
        for r, b in zip(rs, bodies, strict=True):
            assert_same(r.json(), direct(rt, b))
            assert all(len(res["matches"]) == b["top_k"] for res in r.json()["results"])
        count, total = microbatch(rt)
        assert total == len(bodies)
        assert count < len(bodies)  # at least one engine call served more than one request

    run(tmp_path, body, batch_window_ms=100.0, batch_max=64)


def test_bad_request_does_not_poison_the_batch(tmp_path: Path) -> None:
    good = requests(6)
    bad = [{"queries": [[1.0] * (D - 1)]}, {"queries": [[1.0] * D], "beta": -1}, {"queries": []}]

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        rs = await asyncio.gather(*(client.post("/v1/banks/m/query", json=b) for b in good + bad))
        for r, b in zip(rs[: len(good)], good, strict=True):
            assert r.status_code == 200
            assert_same(r.json(), direct(rt, b))
        assert [r.status_code for r in rs[len(good) :]] == [422, 422, 422]
        assert rs[len(good)].json()["error"]["code"] == "dimension_mismatch"

    run(tmp_path, body, batch_window_ms=100.0)


def test_failed_merged_call_falls_back_to_one_call_each(tmp_path: Path) -> None:
    bodies = requests(5)

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        engine = rt.engine
        assert engine is not None
        original = engine.query
        sizes: list[int] = []

        def flaky(name: str, queries: Any, **kw: Any) -> Any:
            sizes.append(queries.batch)  # a QueryInput: validated at the boundary
            if queries.batch > 3:
                raise InvalidInputError("merged call failed")
            return original(name, queries, **kw)

        engine.query = flaky  # type: ignore[method-assign]
        rs = await asyncio.gather(*(client.post("/v1/banks/m/query", json=b) for b in bodies))
        engine.query = original  # type: ignore[method-assign]
        assert max(sizes) > 3  # a merged call happened and failed...
        for r, b in zip(rs, bodies, strict=True):  # ...and every request still got its answer
            assert r.status_code == 200, r.text
            assert_same(r.json(), direct(rt, b))

    run(tmp_path, body, batch_window_ms=100.0)


def test_window_zero_disables_batching(tmp_path: Path) -> None:
    bodies = requests(6)

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        rs = await asyncio.gather(*(client.post("/v1/banks/m/query", json=b) for b in bodies))
        assert all(r.status_code == 200 for r in rs)
        assert microbatch(rt) == (len(bodies), len(bodies))

    run(tmp_path, body, batch_window_ms=0)


def test_batch_max_bounds_rows_per_call(tmp_path: Path) -> None:
    bodies = [{"queries": RNG.standard_normal((2, D)).tolist()} for _ in range(6)]

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        rs = await asyncio.gather(*(client.post("/v1/banks/m/query", json=b) for b in bodies))
        assert all(r.status_code == 200 for r in rs)
        reg = rt.metrics.registry
        # 12 rows with at most 4 per call: ≥ 3 calls, and no call above 4 rows.
        calls = reg.get_sample_value("lam_query_batch_size_count", {"bank": "m"})
        assert calls is not None and calls >= 3
        assert (
            reg.get_sample_value("lam_query_batch_size_bucket", {"bank": "m", "le": "4.0"}) == calls
        )

    run(tmp_path, body, batch_window_ms=100.0, batch_max=4)


def test_requests_arriving_during_a_call_wait_and_go_out_together(tmp_path: Path) -> None:
    """One engine call per bank at a time: what arrives while it runs joins the next batch,
    instead of starting a second, smaller call that competes for the same cores."""
    first, later = requests(1), requests(5)

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        engine = rt.engine
        assert engine is not None
        original = engine.query
        release, started = threading.Event(), threading.Event()
        sizes: list[int] = []
        running = [0, 0]  # now, most ever

        def gated(name: str, queries: Any, **kw: Any) -> Any:
            with lock:
                running[0] += 1
                running[1] = max(running)
                sizes.append(queries.batch)
            started.set()
            release.wait(10)
            try:
                return original(name, queries, **kw)
            finally:
                with lock:
                    running[0] -= 1

        lock = threading.Lock()
        engine.query = gated  # type: ignore[method-assign]
        # The first request is alone and light: it would run on the event loop (_inline),
        # which `gated` then blocks. This test is about the worker pool's batches.
        no_inline = _no_inline(rt)
        try:
            a = asyncio.ensure_future(client.post("/v1/banks/m/query", json=first[0]))
            assert await asyncio.to_thread(started.wait, 10)
            rest = [asyncio.ensure_future(client.post("/v1/banks/m/query", json=b)) for b in later]
            await asyncio.sleep(0.2)  # far beyond the window: they would have gone out by now
            assert sizes == [len(first[0]["queries"])], sizes
            release.set()
            rs = [await a, *[await t for t in rest]]
        finally:
            release.set()
            engine.query = original  # type: ignore[method-assign]
            no_inline()
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
        for r, b in zip(rs, first + later, strict=True):
            assert_same(r.json(), direct(rt, b))
        assert running[1] == 1
        assert sizes == [len(first[0]["queries"]), sum(len(b["queries"]) for b in later)]

    run(tmp_path, body, batch_window_ms=2.0, batch_max=64)


def test_a_lone_query_does_not_wait_for_the_window(tmp_path: Path) -> None:
    """With the engine idle there is nobody to wait for: the window only applies while a
    batch computes. A 1 s window would otherwise show in a lone request's latency."""

    async def body(client: httpx.AsyncClient, rt: Runtime) -> float:
        loop = asyncio.get_running_loop()
        took = []
        for _ in range(3):
            t0 = loop.time()
            r = await client.post("/v1/banks/m/query", json={"queries": [XI[0].tolist()]})
            assert r.status_code == 200
            took.append(loop.time() - t0)
        return min(took)

    assert run(tmp_path, body, batch_window_ms=1000.0) < 0.5


def _threads_of_queries(rt: Runtime) -> tuple[list[str], Callable[[], None]]:
    """Record the thread each engine query runs on; returns (names, undo)."""
    engine = rt.engine
    assert engine is not None
    original, names = engine.query, []

    def spy(*args: Any, **kw: Any) -> Any:
        names.append(threading.current_thread().name)
        return original(*args, **kw)

    engine.query = spy  # type: ignore[method-assign]
    return names, lambda: vars(engine).pop("query", None)  # type: ignore[no-any-return]


def test_a_lone_light_query_runs_on_the_event_loop_and_a_heavy_one_in_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_inline: no hop to a worker for a query that reads little with nothing else waiting;
    the same answer either way, and a bank above INLINE_MAX_BYTES stays in the pool."""
    import service.batching as batching

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        names, undo = _threads_of_queries(rt)
        try:
            b = requests(1)[0]
            r = await client.post("/v1/banks/m/query", json=b)
            assert r.status_code == 200 and names == [threading.current_thread().name]
            assert_same(r.json(), direct(rt, b))
            monkeypatch.setattr(batching, "INLINE_MAX_BYTES", N * D * 4 - 1)
            names.clear()
            r2 = await client.post("/v1/banks/m/query", json=b)
            assert r2.status_code == 200 and names[0].startswith("lam-worker")
            assert_same(r2.json(), r.json())
        finally:
            undo()

    run(tmp_path, body)


def test_a_lone_query_does_not_wait_on_the_event_loop_for_a_write(tmp_path: Path) -> None:
    """While a write holds the bank's lock, a lone light query goes to the pool (LockBusy)
    and the event loop keeps answering other requests."""

    async def body(client: httpx.AsyncClient, rt: Runtime) -> None:
        assert rt.engine is not None
        slot = rt.engine._slot("m")
        held, release = threading.Event(), threading.Event()

        def writer() -> None:
            with slot.lock.write():
                held.set()
                release.wait(10)

        t = threading.Thread(target=writer)
        t.start()
        assert await asyncio.to_thread(held.wait, 10)
        names, undo = _threads_of_queries(rt)
        try:
            q = asyncio.ensure_future(client.post("/v1/banks/m/query", json=requests(1)[0]))
            for _ in range(5000):  # until the inline attempt met the lock
                if names:
                    break
                await asyncio.sleep(0.001)
            assert names[0] == threading.current_thread().name  # tried inline first
            health = await asyncio.wait_for(client.get("/healthz"), 5)  # the loop is free
            assert health.status_code == 200 and not q.done()
            release.set()
            r = await asyncio.wait_for(q, 10)
            assert r.status_code == 200
            assert names[-1].startswith("lam-worker")
        finally:
            release.set()
            t.join(10)
            undo()

    run(tmp_path, body)
