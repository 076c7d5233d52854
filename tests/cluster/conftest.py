"""The real 3-node local Ray cluster of the cluster tests: the session's one
(tests/conftest.py `ray_cluster`, started on first use), with this test process connected
to it as a driver."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="package")
def cluster(ray_cluster: dict[str, Any]) -> dict[str, Any]:
    return ray_cluster
