"""The real 3-node local Ray cluster of the slow tests, with this test process connected to
it as a driver: one per package that asks for it (tests/cluster/conftest.py `cluster`,
tests/api/conftest.py `ray_cluster`), each down before the next package's comes up — a
process can be the driver of one Ray cluster only, and tests/cluster/test_local_cluster.py
runs `lam cluster up` itself, which refuses while another cluster holds its head address.

`head` (default 127.0.0.2, `lam cluster up`'s) moves the nodes to other loopback addresses
(the head there, the workers on the next ones): `up` refuses a head address that already
runs Ray, and `down` ends the processes of its nodes' addresses, so two test sessions on
one machine (other checkouts' included) must not share them. The API suite takes it from
LAM_TEST_RAY_HEAD.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from lam_client import cluster_local

ROOT = Path(__file__).resolve().parents[2]


def _addresses(head: str) -> Any:
    """cluster_local's node addresses from `head` on (node i at head + i)."""
    base = int(head.rsplit(".", 1)[1])
    if not (head.startswith("127.0.0.") and 2 <= base <= 240):
        raise ValueError(f"head {head!r}: a 127.0.0.x address, 2 <= x <= 240")
    return mock.patch.multiple(cluster_local, HEAD_IP=head, node_ip=lambda i: f"127.0.0.{base + i}")


@contextmanager
def local_ray_cluster(
    d: Path, nodes: int = 3, head: str = cluster_local.HEAD_IP
) -> Iterator[dict[str, Any]]:
    """`lam cluster up` in `d` (its head at `head`), ray.init to it; on exit ray.shutdown
    and `down`."""
    import ray

    with _addresses(head):
        yield from _up(ray, d, nodes)


def _up(ray: Any, d: Path, nodes: int) -> Iterator[dict[str, Any]]:
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
