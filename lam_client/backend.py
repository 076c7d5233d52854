"""The transports a client runs on: the `Backend` protocol and `HttpBackend` (httpx + retries).

Like client.py, this module is the source of a generated twin, `async_backend.py`
(`python -m lam_client._codegen`): every function here is I/O except `__init__`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol, runtime_checkable

import httpx

from . import _core, _ops
from ._ops import Op


@runtime_checkable
class Backend(Protocol):
    """What a client runs its operations on: HTTP (`HttpBackend`) or in-process
    (`lam_client.embedded.EmbeddedBackend`). `call` answers API.md's JSON shape."""

    where: str  # "url='…'" or "path='…'", for repr

    def call(self, op: Op[Any]) -> Any: ...

    def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None: ...

    def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any: ...

    def health(self) -> bool: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


class HttpBackend:
    """httpx.Client with the retry decisions of `_core.Attempts`."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retries: int,
        transport: httpx.BaseTransport | None = None,
        sleep: _core.Sleep = _core.blocking_sleep,
    ) -> None:
        self.url = _core.default_url(url)
        self.where = f"url={self.url!r}"
        self.policy = _core.RetryPolicy(retries=retries)
        self.sleep = sleep
        self.http = httpx.Client(
            base_url=self.url,
            headers=_core.headers(_core.default_api_key(api_key)),
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    def send(
        self, build: Callable[[], httpx.Request], idempotent: bool, stream: bool = False
    ) -> httpx.Response:
        """Send with retries; the answer is a success (2xx/3xx) or a raised LamClientError."""
        attempts = _core.Attempts(self.policy, idempotent, self.url)
        while True:
            try:
                response = self.http.send(build(), stream=stream)
            except httpx.TransportError as exc:
                self.sleep(attempts.after_exception(exc))
                continue
            if response.status_code < 400:
                return response
            if stream:
                response.read()
                response.close()
            self.sleep(attempts.after_error_status(response))

    def call(self, op: Op[Any]) -> Any:
        kw = _core.request_kwargs(op)
        response = self.send(lambda: self.http.build_request(**kw), op.idempotent)
        return _core.decode(response)

    def health(self) -> bool:
        response = self.send(lambda: self.http.build_request("GET", "/healthz"), True)
        return response.status_code == 200

    def ready(self) -> bool:
        # Not retried: "not ready yet" (503) is the answer the caller asks for.
        try:
            response = self.http.get("/readyz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None:
        path = _ops.snapshot_path(bank)
        response = self.send(lambda: self.http.build_request("GET", path), True, stream=True)
        try:
            for chunk in response.iter_bytes(_core.CHUNK_BYTES):
                fileobj.write(chunk)
        except httpx.TransportError as exc:
            raise _core.connection_failed(exc, self.url) from exc
        finally:
            response.close()

    def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any:
        kw = _core.snapshot_upload_kwargs(_ops.snapshot_path(name), replace)
        start = fileobj.tell() if fileobj.seekable() else None

        def build() -> httpx.Request:
            if start is not None:
                fileobj.seek(start)  # a retry sends the file again from where it began
            return self.http.build_request(**kw, content=_chunks(fileobj))

        # Without replace a retry after a lost answer would meet its own bank (409): not safe.
        response = self.send(build, idempotent=replace and start is not None)
        return _core.decode(response)

    def close(self) -> None:
        self.http.close()


def _chunks(fileobj: BinaryIO) -> Iterator[bytes]:
    """The file as a stream of bounded chunks: an import never holds the whole file."""
    while chunk := fileobj.read(_core.CHUNK_BYTES):
        yield chunk


__all__ = ["Backend", "HttpBackend"]
