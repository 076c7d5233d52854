"""AsyncClient: the same methods as Client, awaitable (httpx.AsyncClient; embedded runs in a
worker thread so the event loop never blocks on the engine)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, BinaryIO, TypeVar

import httpx

from . import _http, _ops
from ._ops import Op
from ._upload import batches, progress_bar
from .client import PathOrFile, open_binary
from .models import (
    Bank,
    Diagnostics,
    DynamicsResult,
    EnergyResult,
    Memory,
    QueryResponse,
    ScrollPage,
    StoreResult,
)

T = TypeVar("T")


class AsyncHttpBackend:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = _http.default_url(url)
        self.policy = _http.RetryPolicy(retries=retries)
        self.sleep = sleep
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers=_http.headers(_http.default_api_key(api_key)),
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    async def send(
        self, build: Callable[[], httpx.Request], idempotent: bool, stream: bool = False
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self.http.send(build(), stream=stream)
            except httpx.TransportError as exc:
                if not self.policy.retry_exception(attempt, exc, idempotent):
                    raise _http.connection_failed(exc, self.url) from exc
                await self.sleep(self.policy.delay(attempt))
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            if not self.policy.retry_status(attempt, response.status_code):
                raise _http.error_of(response)
            await self.sleep(self.policy.delay(attempt, response))
            attempt += 1

    async def call(self, op: Op[Any]) -> Any:
        kw = _http.request_kwargs(op)
        response = await self.send(lambda: self.http.build_request(**kw), op.idempotent)
        return _http.decode(response)

    async def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None:
        path = _ops.snapshot_path(bank)
        response = await self.send(lambda: self.http.build_request("GET", path), True, stream=True)
        try:
            async for chunk in response.aiter_bytes(1 << 20):
                fileobj.write(chunk)
        except httpx.TransportError as exc:
            raise _http.connection_failed(exc, self.url) from exc
        finally:
            await response.aclose()

    async def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any:
        # Whole-file body: async httpx cannot stream a sync file object.
        data = fileobj.read()
        response = await self.send(
            lambda: self.http.build_request(
                "POST",
                _ops.snapshot_path(name),
                params={"replace": "true" if replace else "false"},
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            idempotent=replace,
        )
        return _http.decode(response)

    async def close(self) -> None:
        await self.http.aclose()


class _AsyncEmbedded:
    def __init__(self, path: str | os.PathLike[str], device: str) -> None:
        from .embedded import EmbeddedBackend

        self.inner = EmbeddedBackend(path, device=device)

    async def call(self, op: Op[Any]) -> Any:
        return await asyncio.to_thread(self.inner.call, op)

    async def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None:
        await asyncio.to_thread(self.inner.export_snapshot, bank, fileobj)

    async def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any:
        return await asyncio.to_thread(self.inner.import_snapshot, name, fileobj, replace)

    async def close(self) -> None:
        self.inner.close()


class AsyncClient:
    """Async twin of `Client` (same arguments, methods and results)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        *,
        path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.embedded = path is not None
        self._backend: AsyncHttpBackend | _AsyncEmbedded
        if path is not None:
            self._backend = _AsyncEmbedded(path, device)
        else:
            self._backend = AsyncHttpBackend(url, api_key, timeout, retries, transport)

    async def _run(self, op: Op[T]) -> T:
        return op.parse(await self._backend.call(op))

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health(self) -> bool:
        """True while the server process answers /healthz (always True embedded)."""
        backend = self._backend
        if isinstance(backend, AsyncHttpBackend):
            r = await backend.send(lambda: backend.http.build_request("GET", "/healthz"), True)
            return r.status_code == 200
        return True

    async def ready(self) -> bool:
        if not isinstance(self._backend, AsyncHttpBackend):
            return True
        try:
            response = await self._backend.http.get("/readyz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def create_bank(self, name: str, dim: int, **config: Any) -> Bank:
        return await self._run(_ops.create_bank(name, dim, config))

    async def list_banks(self) -> list[Bank]:
        return await self._run(_ops.list_banks())

    async def get_bank(self, name: str) -> Bank:
        return await self._run(_ops.get_bank(name))

    async def update_bank(
        self, name: str, *, beta: float | None = None, prefilter: dict[str, Any] | None = None
    ) -> Bank:
        return await self._run(_ops.update_bank(name, beta, prefilter))

    async def delete_bank(self, name: str) -> None:
        await self._run(_ops.delete_bank(name))

    async def store(
        self,
        bank: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
    ) -> StoreResult:
        return await self._run(_ops.store(bank, vectors, ids, payloads))

    async def upload(
        self,
        bank: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        batch_size: int = 1000,
        progress: bool = True,
    ) -> StoreResult:
        all_ids: list[str] = []
        count = 0
        chunks = list(batches(vectors, ids, payloads, batch_size))
        with progress_bar(progress) as bar:
            task = bar.add_task(f"storing into {bank}", total=sum(c[0].shape[0] for c in chunks))
            for xi, bids, bpay in chunks:
                result = await self.store(bank, xi, bids, bpay)
                all_ids.extend(result.ids)
                count = result.count
                bar.advance(task, xi.shape[0])
        return StoreResult(ids=all_ids, count=count)

    async def get(self, bank: str, id: str) -> Memory:
        return await self._run(_ops.get_memory(bank, id))

    async def delete(self, bank: str, id: str) -> None:
        await self._run(_ops.delete_memory(bank, id))

    async def delete_many(self, bank: str, ids: Sequence[str]) -> int:
        return await self._run(_ops.delete_many(bank, ids))

    async def scroll(self, bank: str, limit: int = 100, cursor: str | None = None) -> ScrollPage:
        return await self._run(_ops.scroll(bank, limit, cursor))

    async def iterate_memories(self, bank: str, page_size: int = 100) -> AsyncIterator[Memory]:
        cursor: str | None = None
        while True:
            page = await self.scroll(bank, page_size, cursor)
            for memory in page.memories:
                yield memory
            cursor = page.next_cursor
            if cursor is None:
                return

    async def query(
        self,
        bank: str,
        queries: Any,
        mask: Any = None,
        beta: float | None = None,
        steps: int = 1,
        tol: float = 1e-6,
        top_k: int = 5,
        with_payload: bool = True,
        with_vectors: bool = False,
        exact: bool = False,
    ) -> QueryResponse:
        return await self._run(
            _ops.query(
                bank,
                queries,
                mask=mask,
                beta=beta,
                steps=steps,
                tol=tol,
                top_k=top_k,
                with_payload=with_payload,
                with_vectors=with_vectors,
                exact=exact,
            )
        )

    async def energy(
        self,
        bank: str,
        states: Any,
        beta: float | None = None,
        constants: bool = False,
        gradient: bool = False,
    ) -> EnergyResult:
        return await self._run(
            _ops.energy(bank, states, beta=beta, constants=constants, gradient=gradient)
        )

    async def dynamics(self, bank: str, state: Any, **params: Any) -> DynamicsResult:
        return await self._run(_ops.dynamics(bank, state, **params))

    async def diagnostics(
        self, bank: str, beta: float | None = None, limit: int = 100, offset: int = 0
    ) -> Diagnostics:
        return await self._run(_ops.diagnostics(bank, beta, limit, offset))

    async def export_snapshot(self, bank: str, path_or_file: PathOrFile) -> None:
        with open_binary(path_or_file, "wb") as f:
            await self._backend.export_snapshot(bank, f)

    async def import_snapshot(
        self, name: str, path_or_file: PathOrFile, replace: bool = False
    ) -> Bank:
        with open_binary(path_or_file, "rb") as f:
            return Bank.from_dict(await self._backend.import_snapshot(name, f, replace))


__all__ = ["AsyncClient"]
