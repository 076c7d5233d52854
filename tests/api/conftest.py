"""TestClient fixtures, one app per test, over each selected backend (tests/api/backends.py,
LAM_API_BACKENDS; default `engine`): a real Engine under tmp_path, or the cluster router
over in-process stand-in Ray actors (`cluster`) or over the real local cluster (`ray`).
The cases that cannot run as they are on a cluster bank are tests/api/cluster_cases.py's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import backends, cluster_cases
from tests.api.api_support import ClientFactory, make_bank


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api_backend" in metafunc.fixturenames:
        # module scope: a module's fixtures may open one client per backend (test_text_banks)
        metafunc.parametrize("api_backend", backends.selected(), scope="module")


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects: the ray cases are slow
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    table = cluster_cases.reasons()
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("api_backend") if callspec is not None else None
        if backend not in backends.ROUTED:
            continue
        if backend == "ray":
            item.add_marker(pytest.mark.slow)
        name = getattr(item, "originalname", item.name)  # the test, without its parameters
        kind, why = table.get(f"{item.path.stem}::{name}", ("", ""))
        if kind == "skip":
            item.add_marker(pytest.mark.skip(reason=f"cannot apply on a cluster bank: {why}"))
        elif kind == "xfail":
            item.add_marker(pytest.mark.xfail(strict=True, reason=why))


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The `ray` backend's real cluster: one for the API suite (tests/harness/ray_cluster.py;
    LAM_TEST_RAY_HEAD moves its addresses off another session's)."""
    pytest.importorskip("ray")
    from tests.harness.ray_cluster import local_ray_cluster

    head = os.environ.get(backends.HEAD_ENV, "127.0.0.2")
    with local_ray_cluster(tmp_path_factory.mktemp("raycluster"), head=head) as doc:
        yield doc


@pytest.fixture
def make_client(
    api_backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: Any
) -> Iterator[ClientFactory]:
    """make_client(**settings) → a started, ready TestClient; all are closed at teardown."""
    stack: list[TestClient] = []
    backends.install_ray(api_backend, request, monkeypatch, tmp_path / "nodes")

    def make(**overrides: Any) -> TestClient:
        overrides.setdefault("data_dir", tmp_path / f"data{len(stack)}")
        stack.append(backends.open_client(api_backend, **overrides))
        return stack[-1]

    yield make
    for client in reversed(stack):
        backends.close_client(api_backend, client)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def bank(client: TestClient) -> str:
    return make_bank(client)
