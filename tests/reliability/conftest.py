"""Fixtures of the reliability suite: real `python -m service` processes on loopback ports.

Starting the service costs a few seconds (torch import), so servers that tests can share are
module-scoped; tests that kill or fill their server get their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_harness import LamServer, ServerFactory


def _factory(root: Path, stack: list[LamServer]) -> ServerFactory:
    def make(
        name: str = "s", data_dir: Path | None = None, start: bool = True, **env: str
    ) -> LamServer:
        server = LamServer(
            data_dir=data_dir or root / f"{name}-data",
            log_path=root / f"{name}.log",
            env={f"LAM_{k.upper()}": str(v) for k, v in env.items()},
        )
        stack.append(server)
        if start:
            server.start()
        return server

    return make


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """make_server(name, data_dir=None, start=True, **settings) → LamServer, stopped at teardown."""
    stack: list[LamServer] = []
    yield _factory(tmp_path, stack)
    for server in reversed(stack):
        server.stop()


@pytest.fixture(scope="module")
def make_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    stack: list[LamServer] = []
    yield _factory(tmp_path_factory.mktemp("srv"), stack)
    for server in reversed(stack):
        server.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LamServer]:
    """One default-settings server for the concurrency and load tests (no kills, no limits)."""
    stack: list[LamServer] = []
    server = _factory(tmp_path_factory.mktemp("shared"), stack)("shared")
    yield server
    server.stop()
