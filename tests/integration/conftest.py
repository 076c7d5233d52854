"""A real server process: `python -m service` (uvicorn) on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration_support import LiveServer, start_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the integration tests (starting one costs seconds: torch import).

    Small step limits keep fuzzed /dynamics and /query calls short.
    """
    root = tmp_path_factory.mktemp("live")
    server = start_server(
        root / "data", root / "server.log",
        LAM_MAX_DYNAMICS_STEPS="2000", LAM_MAX_QUERY_STEPS="200",
    )  # fmt: skip
    yield server
    code = server.stop()
    log = server.log.read_text()
    assert code == 0, f"unclean shutdown ({code}): {log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
