"""The real 3-node local Ray cluster of the cluster tests: started once for the package
(≈ 10–40 s on 2 shared cores), with this test process connected to it as a driver."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lam_client import cluster_local

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ray = pytest.importorskip("ray")
    d = tmp_path_factory.mktemp("raycluster")
    # The nodes' workers import lam_engine / lam_cluster from this checkout.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + old if old else "")
    doc = cluster_local.up(d, 3)
    ray.init(
        address=doc["address"],
        _node_ip_address=cluster_local.HEAD_IP,
        namespace=f"lam-test-{uuid.uuid4().hex[:8]}",
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        yield {"dir": d, **doc}
    finally:
        ray.shutdown()
        cluster_local.down(d)
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
