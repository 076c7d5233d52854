"""The synchronous client: `Client(url)` speaks HTTP, `Client(path=...)` runs embedded."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

import httpx

from . import _http, _ops
from ._ops import Op
from ._upload import batches, progress_bar
from .errors import LamClientError
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
PathOrFile = str | os.PathLike[str] | IO[bytes]


class HttpBackend:
    """httpx.Client with the retry policy of `_http`."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retries: int,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = _http.default_url(url)
        self.policy = _http.RetryPolicy(retries=retries)
        self.sleep = sleep
        self.http = httpx.Client(
            base_url=self.url,
            headers=_http.headers(_http.default_api_key(api_key)),
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    def send(
        self, build: Callable[[], httpx.Request], idempotent: bool, stream: bool = False
    ) -> httpx.Response:
        """Send with retries; the answer is a success (2xx/3xx) or a raised LamClientError."""
        attempt = 0
        while True:
            try:
                response = self.http.send(build(), stream=stream)
            except httpx.TransportError as exc:
                if not self.policy.retry_exception(attempt, exc, idempotent):
                    raise _http.connection_failed(exc, self.url) from exc
                self.sleep(self.policy.delay(attempt))
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            if stream:
                response.read()
                response.close()
            if not self.policy.retry_status(attempt, response.status_code):
                raise _http.error_of(response)
            self.sleep(self.policy.delay(attempt, response))
            attempt += 1

    def call(self, op: Op[Any]) -> Any:
        kw = _http.request_kwargs(op)
        response = self.send(lambda: self.http.build_request(**kw), op.idempotent)
        return _http.decode(response)

    def raw_get(self, path: str) -> httpx.Response:
        response = self.send(lambda: self.http.build_request("GET", path), True)
        return response

    def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None:
        path = _ops.snapshot_path(bank)
        response = self.send(lambda: self.http.build_request("GET", path), True, stream=True)
        try:
            for chunk in response.iter_bytes(1 << 20):
                fileobj.write(chunk)
        except httpx.TransportError as exc:
            raise _http.connection_failed(exc, self.url) from exc
        finally:
            response.close()

    def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any:
        path = _ops.snapshot_path(name)
        start = fileobj.tell() if fileobj.seekable() else None

        def build() -> httpx.Request:
            if start is not None:
                fileobj.seek(start)
            return self.http.build_request(
                "POST",
                path,
                params={"replace": "true" if replace else "false"},
                content=_chunks(fileobj),
                headers={"Content-Type": "application/octet-stream"},
            )

        # Without replace a retry after a lost answer would meet its own bank (409): not safe.
        response = self.send(build, idempotent=replace and start is not None)
        return _http.decode(response)

    def close(self) -> None:
        self.http.close()


def _chunks(fileobj: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := fileobj.read(size):
        yield chunk


@contextlib.contextmanager
def open_binary(target: PathOrFile, mode: str) -> Iterator[BinaryIO]:
    if isinstance(target, (str, os.PathLike)):
        with open(target, mode) as f:
            yield f  # type: ignore[misc]
    else:
        yield target  # type: ignore[misc]


class Client:
    """LAM client. HTTP: `Client("http://127.0.0.1:8000", api_key=...)`; embedded, in-process:
    `Client(path="./data")` (or `path=":memory:"`). Both have the same methods and results.

    Errors are `lam_client.errors.LamClientError` subclasses carrying the service's code.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        *,
        path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        from .embedded import EmbeddedBackend

        self.embedded = path is not None
        self._backend: HttpBackend | EmbeddedBackend
        if path is not None:
            self._backend = EmbeddedBackend(path, device=device)
        else:
            self._backend = HttpBackend(url, api_key, timeout, retries, transport)

    def __repr__(self) -> str:
        b = self._backend
        where = f"path={b.path!r}" if self.embedded else f"url={b.url!r}"  # type: ignore[union-attr]
        return f"Client({where})"

    def _run(self, op: Op[T]) -> T:
        return op.parse(self._backend.call(op))

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> bool:
        """True while the server process answers /healthz (always True embedded)."""
        if isinstance(self._backend, HttpBackend):
            return self._backend.raw_get("/healthz").status_code == 200
        return True

    def ready(self) -> bool:
        """True once every bank is loaded (/readyz 200); False on 503, without retrying."""
        if not isinstance(self._backend, HttpBackend):
            return True
        try:
            response = self._backend.http.get("/readyz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    # ---- banks -----------------------------------------------------------------------------
    def create_bank(self, name: str, dim: int, **config: Any) -> Bank:
        """Create (or, with the same config, get) a bank; config: model, beta, normalize,
        dtype, device, prefilter (dict), model_params (dict). 409 Conflict on another config."""
        return self._run(_ops.create_bank(name, dim, config))

    def list_banks(self) -> list[Bank]:
        return self._run(_ops.list_banks())

    def get_bank(self, name: str) -> Bank:
        return self._run(_ops.get_bank(name))

    def update_bank(
        self, name: str, *, beta: float | None = None, prefilter: dict[str, Any] | None = None
    ) -> Bank:
        return self._run(_ops.update_bank(name, beta, prefilter))

    def delete_bank(self, name: str) -> None:
        self._run(_ops.delete_bank(name))

    # ---- memories --------------------------------------------------------------------------
    def store(
        self,
        bank: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
    ) -> StoreResult:
        """Upsert one batch (N, d). Idempotent, so it is retried like a read."""
        return self._run(_ops.store(bank, vectors, ids, payloads))

    def upload(
        self,
        bank: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        batch_size: int = 1000,
        progress: bool = True,
    ) -> StoreResult:
        """Store many memories in batches of `batch_size`, with a progress bar on stderr."""
        all_ids: list[str] = []
        count = 0
        chunks = list(batches(vectors, ids, payloads, batch_size))
        total = sum(c[0].shape[0] for c in chunks)
        with progress_bar(progress) as bar:
            task = bar.add_task(f"storing into {bank}", total=total)
            for xi, bids, bpay in chunks:
                result = self.store(bank, xi, bids, bpay)
                all_ids.extend(result.ids)
                count = result.count
                bar.advance(task, xi.shape[0])
        return StoreResult(ids=all_ids, count=count)

    def get(self, bank: str, id: str) -> Memory:
        return self._run(_ops.get_memory(bank, id))

    def delete(self, bank: str, id: str) -> None:
        self._run(_ops.delete_memory(bank, id))

    def delete_many(self, bank: str, ids: Sequence[str]) -> int:
        """Delete by id; returns how many existed (unknown ids are not counted)."""
        return self._run(_ops.delete_many(bank, ids))

    def scroll(self, bank: str, limit: int = 100, cursor: str | None = None) -> ScrollPage:
        return self._run(_ops.scroll(bank, limit, cursor))

    def iterate_memories(self, bank: str, page_size: int = 100) -> Iterator[Memory]:
        """Every memory of the bank in insertion order, one page at a time."""
        cursor: str | None = None
        while True:
            page = self.scroll(bank, page_size, cursor)
            yield from page.memories
            cursor = page.next_cursor
            if cursor is None:
                return

    # ---- retrieval -------------------------------------------------------------------------
    def query(
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
        """Retrieve for (B, d) cues (or one (d,) cue); `mask` (B, d) or (d,), True = known."""
        return self._run(
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

    def energy(
        self,
        bank: str,
        states: Any,
        beta: float | None = None,
        constants: bool = False,
        gradient: bool = False,
    ) -> EnergyResult:
        return self._run(
            _ops.energy(bank, states, beta=beta, constants=constants, gradient=gradient)
        )

    def dynamics(self, bank: str, state: Any, **params: Any) -> DynamicsResult:
        """Integrate the two-layer network from `state`; params: hidden, input, tau_f, tau_h,
        dt, t_max, record_every, tol, top_k (API.md defaults)."""
        return self._run(_ops.dynamics(bank, state, **params))

    def diagnostics(
        self, bank: str, beta: float | None = None, limit: int = 100, offset: int = 0
    ) -> Diagnostics:
        return self._run(_ops.diagnostics(bank, beta, limit, offset))

    # ---- snapshots -------------------------------------------------------------------------
    def export_snapshot(self, bank: str, path_or_file: PathOrFile) -> None:
        """Write the whole bank as one portable snapshot file."""
        if isinstance(path_or_file, (str, os.PathLike)):
            target = Path(path_or_file)
            tmp = target.with_name(target.name + ".part")
            with open(tmp, "wb") as f:
                self._backend.export_snapshot(bank, f)
            tmp.replace(target)  # a failed export never leaves a truncated file behind
            return
        self._backend.export_snapshot(bank, path_or_file)  # type: ignore[arg-type]

    def import_snapshot(self, name: str, path_or_file: PathOrFile, replace: bool = False) -> Bank:
        """Restore a snapshot into bank `name` (409 Conflict if it exists, unless replace)."""
        with open_binary(path_or_file, "rb") as f:
            return Bank.from_dict(self._backend.import_snapshot(name, f, replace))


__all__ = ["Client", "HttpBackend", "LamClientError"]
