"""One live `python -m service` per test session (auth on: a write key and a read key)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lam_client import Client

WRITE_KEY = "test-write-key"
READ_KEY = "test-read-key"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    data_dir: Path
    log: Path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("lam-server")
    port = free_port()
    env = {
        **os.environ,
        "LAM_HOST": "127.0.0.1",
        "LAM_PORT": str(port),
        "LAM_DATA_DIR": str(root / "data"),
        "LAM_API_KEYS": f"{WRITE_KEY}:write,{READ_KEY}:read",
        "LAM_LOG_LEVEL": "warning",
        "LAM_DEVICE": "cpu",
        "LAM_SYNCHRONOUS": "NORMAL",
    }
    log = root / "server.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Server(url, root / "data", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def read_key() -> str:
    return READ_KEY


@pytest.fixture
def write_key() -> str:
    return WRITE_KEY


@pytest.fixture
def http_client(server: Server) -> Iterator[Client]:
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
