"""The router app (LAM_CLUSTER=ray) over a fake cluster (fake_ray.py) for the default-run
cluster tests: `FakeRouter(tmp_path, monkeypatch, clock).start()` is a client of a router
whose replicas are actors in this process; `start()` again is a restarted router. With a
`clock`, the router reads that clock (lam_cluster/backend.CLOCK): the tests move it by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from lam_engine.clock import Clock
from service import Settings, create_app
from tests.api.api_support import wait_ready
from tests.harness.fake_ray import FakeRay


def install_fake_ray(tmp_path: Path, monkeypatch: Any) -> FakeRay:
    """A fake 3-node cluster (node0..node2) in place of `ray`, for this test; a replica that
    comes back is probed at once."""
    import lam_cluster.replica_calls as replica_calls

    ray = FakeRay(tmp_path / "nodes", ["node0", "node1", "node2"])
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr(replica_calls, "PROBE_EVERY_S", 0.0)
    return ray


class FakeRouter:
    def __init__(self, tmp_path: Path, monkeypatch: Any, clock: Clock | None = None) -> None:
        import lam_cluster.backend as backend

        self.ray = install_fake_ray(tmp_path, monkeypatch)
        if clock is not None:
            monkeypatch.setattr(backend, "CLOCK", clock)
        self.data_dir = tmp_path / "router"
        self.clients: list[TestClient] = []

    def start(self) -> TestClient:
        settings = Settings(cluster="ray", data_dir=self.data_dir, ray_address="auto")
        c = TestClient(create_app(settings), raise_server_exceptions=False)
        c.__enter__()
        wait_ready(c)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.__exit__(None, None, None)
        self.clients.clear()
