"""TestClient fixtures, one app per test, over each selected backend (tests/api/backends.py,
LAM_API_BACKENDS; default `engine`): a real Engine under tmp_path, or the cluster router
over in-process stand-in Ray actors (`cluster`) or over the real local cluster (`ray`).
The cases that cannot run as they are on a cluster bank are tests/api/cluster_cases.py's."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from tests.api import backends, cluster_cases
from tests.api.api_support import ClientFactory, make_bank, wait_ready


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api_backend" in metafunc.fixturenames:
        metafunc.parametrize("api_backend", backends.selected())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    table = cluster_cases.reasons()
    for item in items:
        backend = getattr(item, "callspec", None) and item.callspec.params.get("api_backend")
        if backend not in backends.ROUTED:
            continue
        if backend == "ray":
            item.add_marker(pytest.mark.slow)
        kind, why = table.get(f"{item.path.stem}::{item.originalname}", (None, ""))  # type: ignore[attr-defined]
        if kind == "skip":
            item.add_marker(pytest.mark.skip(reason=f"cannot apply on a cluster bank: {why}"))
        elif kind == "xfail":
            item.add_marker(pytest.mark.xfail(strict=True, reason=why))


@pytest.fixture
def make_client(
    api_backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: Any
) -> Iterator[ClientFactory]:
    """make_client(**settings) → a started, ready TestClient; all are closed at teardown."""
    stack: list[TestClient] = []
    cls = TestClient
    routed: dict[str, Any] = {}
    if api_backend in backends.ROUTED:
        cls, routed = backends.ShardingClient, {"cluster": "ray", "ray_address": "auto"}
    if api_backend == "cluster":
        from tests.harness.fake_ray import FakeRay

        monkeypatch.setitem(sys.modules, "ray", FakeRay(tmp_path / "nodes", backends.NODES))
    elif api_backend == "ray":
        request.getfixturevalue("ray_cluster")

    def make(**overrides: Any) -> TestClient:
        overrides.setdefault("data_dir", tmp_path / f"data{len(stack)}")
        app = create_app(Settings(**{**routed, **overrides}))
        client = cls(app, raise_server_exceptions=False)
        client.__enter__()
        stack.append(client)
        wait_ready(client)
        return client

    yield make
    for client in reversed(stack):
        if api_backend == "ray":  # the replicas are detached actors: end the test's banks
            backends.drop_banks(client)
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def bank(client: TestClient) -> str:
    return make_bank(client)
