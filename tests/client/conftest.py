"""One live `python -m service` per test session (auth on: a write key and a read key)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lam_client import Client
from tests.harness import LamServer
from tests.harness.fixtures import serve

WRITE_KEY = "test-write-key"
READ_KEY = "test-read-key"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LamServer]:
    env = {
        "LAM_API_KEYS": f"{WRITE_KEY}:write,{READ_KEY}:read",
        "LAM_LOG_LEVEL": "warning",
        "LAM_SYNCHRONOUS": "NORMAL",
    }
    yield from serve(tmp_path_factory, "lam-server", env, timeout=60)


@pytest.fixture
def read_key() -> str:
    return READ_KEY


@pytest.fixture
def write_key() -> str:
    return WRITE_KEY


@pytest.fixture
def http_client(server: LamServer) -> Iterator[Client]:
    with Client(server.url, api_key=WRITE_KEY, timeout=30.0) as c:
        yield c


@pytest.fixture
def embedded_client(tmp_path: Path) -> Iterator[Client]:
    with Client(path=tmp_path / "embedded") as c:
        yield c


@pytest.fixture(params=["http", "embedded"])
def client(request: pytest.FixtureRequest) -> Client:
    """Every SDK test runs against the live server and against the embedded engine."""
    name = "http_client" if request.param == "http" else "embedded_client"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


_counter = iter(range(1_000_000))


@pytest.fixture
def bank_name(request: pytest.FixtureRequest) -> str:
    """A fresh bank name per test (the HTTP server is shared by the whole session)."""
    return f"t{next(_counter)}-{os.getpid() % 1000}"
