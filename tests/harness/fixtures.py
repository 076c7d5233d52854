"""Pytest fixtures over LamServer: the suites differ only by the environment they pass."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import LamServer

# make_server(name, data_dir=None, start=True, **settings) → LamServer, stopped at teardown;
# settings are Settings field names (max_store_batch=64 → LAM_MAX_STORE_BATCH=64).
ServerFactory = Callable[..., LamServer]


class ServerStack:
    """Servers made under one directory, stopped together (last made, first stopped)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[LamServer] = []

    def make(
        self, name: str = "s", data_dir: Path | None = None, start: bool = True, **settings: Any
    ) -> LamServer:
        server = LamServer(
            data_dir=data_dir or self.root / f"{name}-data",
            log_path=self.root / f"{name}.log",
            env={f"LAM_{k.upper()}": str(v) for k, v in settings.items()},
        )
        self.servers.append(server)
        if start:
            server.start()
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def assert_clean_exit(server: LamServer) -> None:
    """SIGTERM, then a graceful exit and a log without tracebacks."""
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete: -SIGTERM is clean.
    code = server.terminate(30)
    log = server.log_text()
    assert code == -signal.SIGTERM, f"unclean shutdown ({code}): {log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]


def serve(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    env: dict[str, str],
    *,
    clean_exit: bool = False,
    timeout: float = 90,
) -> Iterator[LamServer]:
    """Body of a server fixture: start one with `env`, yield it, stop it (`yield from`)."""
    root = tmp_path_factory.mktemp(name)
    srv = LamServer(root / "data", root / "server.log", env=dict(env))
    try:
        srv.start(timeout=timeout)
        yield srv
        if clean_exit:
            assert_clean_exit(srv)
    finally:
        srv.stop()


def session_server(
    fixture_name: str, env: dict[str, str], *, clean_exit: bool = False, timeout: float = 90
) -> Any:
    """A session-scoped fixture `fixture_name`: one server with `env` for the whole session
    (starting one costs seconds: the torch import). With clean_exit, teardown also checks
    that it stops gracefully and logged no traceback."""

    @pytest.fixture(scope="session", name=fixture_name)
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LamServer]:
        yield from serve(
            tmp_path_factory, fixture_name, env, clean_exit=clean_exit, timeout=timeout
        )

    return server


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of small tensors, whatever an earlier module left set:
    intra-op threads only add synchronisation there (≈40× slower on a busy 2-core box).
    Use: `from tests.harness.fixtures import one_torch_thread as one_torch_thread` and
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch  # here, not at the top: the rest of the harness drives servers, needs no torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """make_server(name, data_dir=None, start=True, **settings): servers of one test."""
    stack = ServerStack(tmp_path)
    yield stack.make
    stack.stop_all()


@pytest.fixture(scope="module")
def make_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """As make_server, for servers a module's tests share."""
    stack = ServerStack(tmp_path_factory.mktemp("srv"))
    yield stack.make
    stack.stop_all()
