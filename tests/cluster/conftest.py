"""The real 3-node local Ray cluster of the cluster tests: started once for the package
(≈ 10–40 s on 2 shared cores, tests/harness/ray_cluster.py), with this test process
connected to it as a driver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    pytest.importorskip("ray")
    from tests.harness.ray_cluster import local_ray_cluster

    with local_ray_cluster(tmp_path_factory.mktemp("raycluster")) as doc:
        yield doc
