"""TestClient fixtures: a real Engine under tmp_path, one app per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from tests.api.api_support import ClientFactory, make_bank, wait_ready


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """make_client(**settings) → a started, ready TestClient; all are closed at teardown."""
    stack: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        overrides.setdefault("data_dir", tmp_path / f"data{len(stack)}")
        app = create_app(Settings(**overrides))
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        stack.append(client)
        wait_ready(client)
        return client

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def bank(client: TestClient) -> str:
    return make_bank(client)
