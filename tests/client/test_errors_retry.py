"""Error mapping (HTTP statuses → typed errors, embedded LamError → the same) and retries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from lam_client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    LamClientError,
    NotFound,
    RateLimited,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from lam_client._core import RetryPolicy, retry_after
from lam_client.embedded import map_error
from lam_engine import errors as engine_errors

BANK_JSON = {
    "name": "x",
    "dim": 2,
    "model": "B",
    "beta": 1.0,
    "normalize": False,
    "dtype": "float32",
    "device": "cpu",
    "count": 0,
    "memory_bytes": 0,
    "created_at": "t",
    "index": {"kind": "none"},
}


# ---- auth against the live server ------------------------------------------------------------
def test_missing_and_wrong_key_is_401(server: Any) -> None:
    for key in (None, "wrong-key"):
        with Client(server.url, api_key=key) as c, pytest.raises(Unauthorized) as exc:
            c.list_banks()
        assert exc.value.status == 401 and exc.value.code


def test_read_key_cannot_write_403(server: Any, read_key: str, bank_name: str) -> None:
    with Client(server.url, api_key=read_key) as c:
        assert isinstance(c.list_banks(), list)  # reading is allowed
        with pytest.raises(Forbidden) as exc:
            c.create_bank(bank_name, dim=2)
    assert exc.value.status == 403


def test_unknown_route_bank_is_404_with_body(http_client: Client) -> None:
    with pytest.raises(NotFound) as exc:
        http_client.get_bank("does-not-exist")
    assert exc.value.code == "bank_not_found" and "does-not-exist" in exc.value.message


def _families(cls: type[engine_errors.LamError]) -> list[type[engine_errors.LamError]]:
    return [cls, *(sub for c in cls.__subclasses__() for sub in _families(c))]


@pytest.mark.parametrize("family", _families(engine_errors.LamError), ids=lambda c: c.__name__)
def test_embedded_errors_take_the_status_of_their_family(
    family: type[engine_errors.LamError],
) -> None:
    """Every engine error maps to the status its family declares (lam_engine/errors.py),
    the one table the service reads too: the embedded client keeps none of its own."""
    mapped = map_error(family("boom", {"k": 1}))
    assert mapped.status == family.status and mapped.code == family.code
    assert (mapped.message, mapped.details) == ("boom", {"k": 1})


@pytest.mark.parametrize(
    ("engine_error", "status", "client_class"),
    [
        (engine_errors.BankNotFoundError("x"), 404, NotFound),
        (engine_errors.BankExistsError("x"), 409, Conflict),
        (engine_errors.DimensionMismatchError("x"), 422, InvalidInput),
        (engine_errors.LimitExceededError("x"), 413, TooLarge),
        (engine_errors.StorageError("x"), 507, ServerError),
    ],
)
def test_embedded_errors_map_like_the_service(
    engine_error: engine_errors.LamError, status: int, client_class: type[LamClientError]
) -> None:
    mapped = map_error(engine_error)
    assert mapped.status == status and mapped.code == engine_error.code
    assert type(mapped) is client_class


# ---- retries: a tiny stdlib server that fails first ------------------------------------------
class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 503 + Retry-After the first `fail` times, then 200 with a bank list."""

    fail = 1
    status = 503
    retry_after = "1"
    hits: list[float]

    def do_GET(self) -> None:
        type(self).hits.append(time.monotonic())
        if len(type(self).hits) <= type(self).fail:
            body = orjson.dumps({"error": {"code": "not_ready", "message": "loading"}})
            self.send_response(type(self).status)
            self.send_header("Retry-After", type(self).retry_after)
        else:
            body = orjson.dumps({"banks": [BANK_JSON]})
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[FlakyHandler]]]:
    handler = type("H", (FlakyHandler,), {"hits": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_503_is_retried_after_retry_after(flaky: tuple[str, type[FlakyHandler]]) -> None:
    url, handler = flaky
    with Client(url, retries=3) as c:
        banks = c.list_banks()
    assert [b.name for b in banks] == ["x"]
    assert len(handler.hits) == 2  # one 503, then the success
    assert handler.hits[1] - handler.hits[0] >= 0.95  # Retry-After: 1 was honoured


def test_429_gives_up_after_the_retries(flaky: tuple[str, type[FlakyHandler]]) -> None:
    url, handler = flaky
    handler.fail, handler.status, handler.retry_after = 10, 429, "0"
    with Client(url, retries=2) as c, pytest.raises(RateLimited) as exc:
        c.list_banks()
    assert len(handler.hits) == 3 and exc.value.status == 429


def test_async_client_retries_too(flaky: tuple[str, type[FlakyHandler]]) -> None:
    url, handler = flaky
    handler.retry_after = "0.2"

    async def run() -> list[str]:
        async with AsyncClient(url, retries=1) as c:
            return [b.name for b in await c.list_banks()]

    assert asyncio.run(run()) == ["x"] and len(handler.hits) == 2
    assert handler.hits[1] - handler.hits[0] >= 0.18


# ---- retries: connection failures and idempotency (MockTransport) ----------------------------
def _transport(
    failures: list[Exception], calls: list[httpx.Request], answer: dict[str, object]
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handle)


def test_read_timeout_retried_for_store_which_is_idempotent() -> None:
    calls: list[httpx.Request] = []
    t = _transport([httpx.ReadTimeout("slow")], calls, {"ids": ["a"], "count": 1})
    with Client("http://lam.test", retries=2, transport=t) as c:
        c._backend.sleep = lambda s: None  # type: ignore[attr-defined]
        assert c.store("b", np.ones((1, 2)), ids=["a"]).count == 1
    assert len(calls) == 2 and calls[0].content == calls[1].content  # the same batch resent


def test_read_timeout_not_retried_for_snapshot_import_without_replace(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []
    t = _transport([httpx.ReadTimeout("slow")], calls, BANK_JSON)
    snap = tmp_path / "s.zip"
    snap.write_bytes(b"PK-not-really")
    with Client("http://lam.test", retries=3, transport=t) as c:
        c._backend.sleep = lambda s: None  # type: ignore[attr-defined]
        with pytest.raises(ConnectionFailed):
            c.import_snapshot("x", snap)
        assert len(calls) == 1
        # With replace=True the import is idempotent, so it is retried (and the body resent).
        calls.clear()
        c._backend.http._transport = _transport(  # type: ignore[attr-defined]
            [httpx.ReadTimeout("slow")], calls, BANK_JSON
        )
        assert c.import_snapshot("x", snap, replace=True).name == "x"
    assert len(calls) == 2 and calls[1].read() == b"PK-not-really"


def test_connection_refused_is_retried_then_reported() -> None:
    calls: list[httpx.Request] = []
    fails: list[Exception] = [httpx.ConnectError("refused") for _ in range(5)]
    t = _transport(fails, calls, {})
    slept: list[float] = []
    with Client("http://lam.test", retries=3, transport=t) as c:
        c._backend.sleep = slept.append  # type: ignore[attr-defined]
        with pytest.raises(ConnectionFailed) as exc:
            c.list_banks()
    assert len(calls) == 4 and len(slept) == 3
    assert exc.value.code == "connection_failed"
    # Full-jitter backoff stays under the doubling cap.
    assert all(0 <= s <= 0.25 * 2**i for i, s in enumerate(slept))


def test_503_without_retry_after_uses_backoff_and_raises_unavailable() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"error": {"code": "not_ready", "message": "loading"}})

    with Client("http://lam.test", retries=1, transport=httpx.MockTransport(handle)) as c:
        c._backend.sleep = lambda s: None  # type: ignore[attr-defined]
        with pytest.raises(Unavailable) as exc:
            c.get_bank("x")
    assert len(calls) == 2 and exc.value.code == "not_ready" and exc.value.message == "loading"


def test_retry_after_parsing() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("junk") is None and retry_after(None) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
    when = retry_after(future)
    assert when is not None and 3.0 <= when <= 5.5
    policy = RetryPolicy(retries=3, retry_after_max=2.0)
    assert policy.delay(0, httpx.Response(503, headers={"Retry-After": "100"})) == 2.0


# ---- 429 from a live server with LAM_RATE_LIMIT ----------------------------------------------
def test_live_rate_limit_is_retried_after_the_servers_delay(tmp_path: Path) -> None:
    """The server answers 429 with Retry-After; the SDK waits that long and gets through, or,
    without retries, raises RateLimited with the server's code."""
    from tests.harness import LamServer

    srv = LamServer(tmp_path / "data", tmp_path / "log", env={"LAM_RATE_LIMIT": "2/second"})
    srv.start(timeout=60)
    try:
        with Client(srv.url, retries=0) as c:
            c.list_banks()
            c.list_banks()
            with pytest.raises(RateLimited) as exc:
                c.list_banks()
            assert exc.value.status == 429 and exc.value.code == "rate_limited"
        time.sleep(1.1)  # let the window pass
        t0 = time.monotonic()
        with Client(srv.url, retries=3) as c:
            assert [c.list_banks() for _ in range(5)] == [[]] * 5
        # 5 calls at 2 per second: at least two waits of the server's Retry-After (1 s).
        assert time.monotonic() - t0 >= 1.0
    finally:
        srv.stop()
