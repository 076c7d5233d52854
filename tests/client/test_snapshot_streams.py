"""Snapshots stream both ways, in the sync and the generated async client alike: an export
that fails mid-stream leaves no file (nor a `.part`), an import never reads the whole file."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lam_client import AsyncClient, Client, ConnectionFailed

CHUNK = 1 << 20
BANK_JSON = {"name": "x", "dim": 2, "count": 3}


class BreaksMidStream(BaseHTTPRequestHandler):
    """Promises 4 MiB of snapshot, sends 1 MiB, then drops the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(4 * CHUNK))
        self.end_headers()
        self.wfile.write(b"P" * CHUNK)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broken_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BreaksMidStream)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def export_sync(url: str, target: Path) -> None:
    with Client(url, retries=0) as c:
        c.export_snapshot("x", target)


def export_async(url: str, target: Path) -> None:
    async def run() -> None:
        async with AsyncClient(url, retries=0) as c:
            await c.export_snapshot("x", target)

    asyncio.run(run())


@pytest.mark.parametrize("export", [export_sync, export_async], ids=["sync", "async"])
def test_failed_export_leaves_no_file(
    export: Callable[[str, Path], None], broken_url: str, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh.lamsnap"
    with pytest.raises(ConnectionFailed):
        export(broken_url, fresh)
    assert not fresh.exists()
    # An older snapshot under the target name survives a failed export untouched.
    kept = tmp_path / "kept.lamsnap"
    kept.write_bytes(b"old snapshot")
    with pytest.raises(ConnectionFailed):
        export(broken_url, kept)
    assert kept.read_bytes() == b"old snapshot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.lamsnap"]  # no .part left


class ReadRecorder(io.BytesIO):
    """A snapshot file that records how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.sizes.append(size)
        return super().read(size)


SNAPSHOT = bytes(range(256)) * (14 * CHUNK // 1024)  # 3.5 MiB


def _assert_streamed(f: ReadRecorder, chunks: list[int]) -> None:
    assert all(s is not None and 0 < s <= CHUNK for s in f.sizes), f.sizes  # never read(-1)
    assert len(chunks) >= 4 and max(chunks) <= CHUNK and sum(chunks) == len(SNAPSHOT)


class StreamRecorder(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A server side that consumes the request body as it arrives (httpx's MockTransport
    would read it whole first) and records the size of each chunk."""

    def __init__(self) -> None:
        self.chunks: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        self.chunks.extend(len(c) for c in request.stream)
        return httpx.Response(200, json=BANK_JSON)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for c in request.stream:
            self.chunks.append(len(c))
        return httpx.Response(200, json=BANK_JSON)


def test_sync_import_streams_the_file() -> None:
    f, server = ReadRecorder(SNAPSHOT), StreamRecorder()
    with Client("http://lam.test", transport=server) as c:
        assert c.import_snapshot("x", f).count == 3
    _assert_streamed(f, server.chunks)


def test_async_import_streams_the_file() -> None:
    f, server = ReadRecorder(SNAPSHOT), StreamRecorder()

    async def run() -> Any:
        async with AsyncClient("http://lam.test", transport=server) as c:
            return await c.import_snapshot("x", f)

    assert asyncio.run(run()).count == 3
    _assert_streamed(f, server.chunks)


def test_async_import_retry_resends_the_whole_file(tmp_path: Path) -> None:
    """With replace=True a lost answer is retried, and the file is sent again from its start."""
    bodies: list[bytes] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        body = b"".join([c async for c in request.stream])  # type: ignore[union-attr]
        bodies.append(body)
        if len(bodies) == 1:
            raise httpx.ReadTimeout("lost answer")
        return httpx.Response(200, content=orjson.dumps(BANK_JSON))

    snap = tmp_path / "s.lamsnap"
    snap.write_bytes(SNAPSHOT[: 2 * CHUNK + 5])

    async def no_sleep(_: float) -> None:
        return None

    async def run() -> Any:
        async with AsyncClient("http://lam.test", transport=httpx.MockTransport(handle)) as c:
            c._backend.sleep = no_sleep  # type: ignore[attr-defined]
            return await c.import_snapshot("x", snap, replace=True)

    assert asyncio.run(run()).name == "x"
    assert bodies == [snap.read_bytes()] * 2
