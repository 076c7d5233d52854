"""The backends the API suite runs against (LAM_API_BACKENDS, comma-separated):

- `engine`: `create_app` over an in-process Engine (the default, and the only one in the
  default run);
- `cluster`: the router (`LAM_CLUSTER=ray`, lam_cluster/backend.py) with the replica actors
  in this process (tests/harness/fake_ray.py, 3 nodes): no cluster needed, not `slow`;
- `ray`: the same router over a real 3-node local Ray cluster, one for the package
  (tests/api/conftest.py `ray_cluster`; LAM_TEST_RAY_HEAD, default 127.0.0.2, its head's
  loopback address); its cases are marked `slow`.

On `cluster` and `ray` every bank the tests create is sharded and replicated
(`SHARDS` × `REPLICAS`) unless the request names `shards` or `replicas` itself. This is
done by the test client (`ShardingClient`), not by a default in the router's settings:
API.md says a bank's `shards` and `replicas` default to 1, and a router whose defaults
differed would be a contract change made for a test; the client changes only the requests
that leave them out, so a test that asks for `"shards": 1` (or 5) still gets it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from tests.api.api_support import wait_ready

BACKENDS = ("engine", "cluster", "ray")
ENV = "LAM_API_BACKENDS"
SHARDS, REPLICAS = 3, 2
HEAD_ENV = "LAM_TEST_RAY_HEAD"
ROUTED = ("cluster", "ray")  # the router's backends: cluster_cases.py applies to them


def selected() -> list[str]:
    """The backends named by LAM_API_BACKENDS (default: engine), in BACKENDS order."""
    names = {n.strip() for n in os.environ.get(ENV, "engine").split(",") if n.strip()}
    unknown = names - set(BACKENDS)
    if unknown or not names:
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r}: choose from {', '.join(BACKENDS)}")
    return [b for b in BACKENDS if b in names]


class ShardingClient(TestClient):
    """A TestClient whose bank creations (POST /v1/banks with a JSON object) are sharded and
    replicated by default (module docstring)."""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        body = kwargs.get("json")
        creates = method.upper() == "POST" and str(url).rstrip("/") == "/v1/banks"
        if creates and isinstance(body, dict):
            kwargs["json"] = {"shards": SHARDS, "replicas": REPLICAS, **body}
        return super().request(method, url, *args, **kwargs)


NODES = ["node0", "node1", "node2"]  # the `cluster` backend's stand-in nodes


def install_ray(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, nodes: Path
) -> None:
    """What the backend's router joins: stand-in actors (`cluster`, their nodes' stores
    under `nodes`), the package's real cluster (`ray`), nothing (`engine`)."""
    if backend == "cluster":
        from tests.harness.fake_ray import FakeRay

        monkeypatch.setitem(sys.modules, "ray", FakeRay(nodes, NODES))
    elif backend == "ray":
        request.getfixturevalue("ray_cluster")


def open_client(backend: str, **settings: Any) -> TestClient:
    """A started, ready TestClient over `create_app(Settings(**settings))`, as the router
    (LAM_CLUSTER=ray, a ShardingClient) on the routed backends."""
    cls, routed = TestClient, {}
    if backend in ROUTED:
        cls, routed = ShardingClient, {"cluster": "ray", "ray_address": "auto"}
    client = cls(create_app(Settings(**{**routed, **settings})), raise_server_exceptions=False)
    client.__enter__()
    wait_ready(client)
    return client


def close_client(backend: str, client: TestClient) -> None:
    if backend == "ray":  # the replicas are detached actors: end the client's banks
        engine = client.app.state.rt.engine  # type: ignore[attr-defined]
        for name in engine.bank_names():
            engine.delete_bank(name)
    client.__exit__(None, None, None)
