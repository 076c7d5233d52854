"""Fixtures for the deployment tests: real tools (hadolint, kubectl, promtool), a real server.

Every tool is installed by scripts/install-test-tools.sh (run by `make test`), so a
missing tool FAILS the test that needs it instead of skipping it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import OVERLAYS, REPO, require_tool, run_tool
from tests.harness.fixtures import session_server


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


# `python -m service` on a free loopback port, its data dir in a temp dir.
live_server = session_server("live_server", {"LAM_LOG_LEVEL": "warning"})
