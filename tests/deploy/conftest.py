"""Fixtures for the deployment tests: real tools (hadolint, kubectl, promtool), a real server.

Every tool is installed by scripts/install-test-tools.sh (run by `make test`), so a
missing tool FAILS the test that needs it instead of skipping it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    OVERLAYS,
    REPO,
    Server,
    free_port,
    require_tool,
    run_tool,
    stop,
    wait_http,
)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """`kubectl kustomize` of every overlay → its objects."""
    kubectl = require_tool("kubectl")
    out: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        proc = run_tool([kubectl, "kustomize", str(REPO / "deploy" / "overlays" / overlay)])
        assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
        out[overlay] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m service` on a free loopback port, its data dir in a temp dir."""
    tmp = tmp_path_factory.mktemp("live")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAM_")}
    env.update(
        LAM_HOST="127.0.0.1",
        LAM_PORT=str(port),
        LAM_DATA_DIR=str(tmp / "data"),
        LAM_LOG_LEVEL="warning",
        LAM_DEVICE="cpu",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    log = tmp / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_http(server, "/readyz", timeout=90)
        yield server
    finally:
        stop(proc)
