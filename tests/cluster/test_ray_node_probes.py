"""The Kubernetes pods' probes (`lam-ray-node alive|ready`, docker/ray-node.sh) on real Ray
nodes: the package's 3-node loopback cluster stands in for the pods, each node's loopback
address for its POD_IP. Only the probes run here — `node` and `router` start Ray and stop
it with `ray stop` on SIGTERM, which in a pod is the pod's own Ray and on this machine
would be everyone's (tests/deploy/test_ray_node_script.py runs them against a stub).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from lam_client import cluster_local
from tests.harness import REPO

SCRIPT = REPO / "docker" / "ray-node.sh"


def probe(mode: str, ip: str, address: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, POD_IP=ip, LAM_RAY_ADDRESS=address)
    return subprocess.run(
        ["bash", str(SCRIPT), mode], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_probes_pass_on_every_real_node_and_fail_without_a_raylet(
    cluster: dict[str, Any],
) -> None:
    address = cluster["address"]
    for index in range(len(cluster["nodes"])):
        ip = cluster_local.node_ip(index)
        for mode in ("alive", "ready"):
            proc = probe(mode, ip, address)
            assert proc.returncode == 0, f"{mode} {ip}: {proc.stderr}"
    nobody = cluster_local.node_ip(len(cluster["nodes"]) + 100)
    for mode in ("alive", "ready"):
        proc = probe(mode, nobody, address)
        assert proc.returncode == 1 and f"no raylet for {nobody}" in proc.stderr, proc.stderr
