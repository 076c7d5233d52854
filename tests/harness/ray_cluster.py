"""The real 3-node local Ray cluster of the slow tests, with this test process connected to
it as a driver. One per session (tests/conftest.py `ray_cluster`): the cluster tests
(tests/cluster) and the API suite's `ray` backend (tests/api) share it, because a process
can be the driver of one Ray cluster only, and each start costs ≈ 10–40 s on 2 shared cores.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lam_client import cluster_local

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def local_ray_cluster(d: Path, nodes: int = 3) -> Iterator[dict[str, Any]]:
    """`lam cluster up` in `d`, ray.init to it; on exit ray.shutdown and `down`."""
    import ray

    # The nodes' workers import lam_engine / lam_cluster from this checkout.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + old if old else "")
    try:
        doc = cluster_local.up(d, nodes)
        try:
            ray.init(
                address=doc["address"],
                _node_ip_address=cluster_local.HEAD_IP,
                namespace=f"lam-test-{uuid.uuid4().hex[:8]}",
                logging_level="ERROR",
                log_to_driver=False,
            )
            yield {"dir": d, **doc}
        finally:
            ray.shutdown()
            cluster_local.down(d)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
