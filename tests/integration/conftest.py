"""A real server process: `python -m service` (uvicorn) on a free loopback port."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from live_server import LamServer


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LamServer]:
    """One server for the integration tests (starting one costs seconds: torch import).

    Small step limits keep fuzzed /dynamics and /query calls short.
    """
    root = tmp_path_factory.mktemp("live")
    server = LamServer(
        root / "data", root / "server.log",
        env={"LAM_MAX_DYNAMICS_STEPS": "2000", "LAM_MAX_QUERY_STEPS": "200",
             "LAM_LOG_LEVEL": "warning"},
    )  # fmt: skip
    server.start(timeout=60)
    yield server
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete: -SIGTERM is clean.
    code = server.terminate(30)
    log = server.log_text()
    assert code == -signal.SIGTERM, f"unclean shutdown ({code}): {log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
