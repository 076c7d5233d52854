"""The integration adapters against a live `python -m service` and in embedded mode.

One server per session (started on first use, on a free loopback port, its data in a temp
dir), one embedded Client per session; each test works in a bank of its own.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lam_client import Client
from lam_engine.embed import MINILM, Embedder, load_embedder, text_extra_installed
from tests.harness import LamServer
from tests.harness.fixtures import serve

try:
    import pytest_asyncio  # noqa: F401

    HAVE_ASYNCIO_PLUGIN = True
except ImportError:  # the dev extra brings it; without it async tests skip, not fail
    HAVE_ASYNCIO_PLUGIN = False


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> Any:
    """LangChain's standard suite writes its async tests as bare `async def` (its own repos
    run pytest-asyncio in auto mode). Marking them here, before pytest-asyncio looks, keeps
    auto mode out of the rest of the suite."""
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        if HAVE_ASYNCIO_PLUGIN:
            pytest.mark.asyncio(obj)
        else:
            pytest.mark.skip(reason="needs pytest-asyncio (the dev extra)")(obj)
    return (yield)


@pytest.fixture(scope="session")
def lam_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LamServer]:
    # NORMAL: the suites write many tiny batches; durability per batch is not under test.
    env = {"LAM_LOG_LEVEL": "warning", "LAM_SYNCHRONOUS": "NORMAL"}
    yield from serve(tmp_path_factory, "lam-integrations", env)


@pytest.fixture(scope="session")
def lam_url(lam_server: LamServer) -> str:
    return lam_server.url


@pytest.fixture(scope="session")
def http_client(lam_url: str) -> Iterator[Client]:
    with Client(lam_url, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="session")
def embedded_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with Client(path=tmp_path_factory.mktemp("lam-embedded"), device="cpu") as c:
        yield c


@pytest.fixture
def bank_name() -> str:
    return f"it-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    if not text_extra_installed():
        pytest.skip("the text extra is not installed (pip install lam[text])")
    return load_embedder(MINILM)
