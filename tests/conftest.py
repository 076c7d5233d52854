"""Suite-wide settings: hypothesis without deadlines (the CI machine is shared and noisy)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "lam", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=25
)
settings.load_profile("lam")

# The suite's tensors are small: on 2 shared cores, one torch thread avoids oversubscription
# (measured ~40× faster for small sweeps under load). Servers started by tests are separate.
import torch  # noqa: E402

torch.set_num_threads(1)


# The real local Ray cluster (tests/harness/ray_cluster.py): one per session, shared by the
# cluster tests and the API suite's `ray` backend; started only by a test that asks for it.
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    pytest.importorskip("ray")
    from tests.harness.ray_cluster import local_ray_cluster

    with local_ray_cluster(tmp_path_factory.mktemp("raycluster")) as doc:
        yield doc
