"""`lam cluster up|add-node|down` (API.md "Sharded banks"): a real Ray cluster on loopback.

The slow test starts real `ray start` node trees (≈ 40 s on 2 shared cores): run it with
`python -m pytest -q -m slow tests/cluster`. The fast ones check the pieces without Ray.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lam_client import cluster_local
from lam_client.cli import app


def test_nodes_get_their_own_loopback_addresses() -> None:
    assert [cluster_local.node_ip(i) for i in range(3)] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with pytest.raises(cluster_local.ClusterError):
        cluster_local.node_ip(250)
    port = cluster_local.free_port("127.0.0.3")
    with socket.socket() as s:
        s.bind(("127.0.0.3", port))  # free indeed, and on that address


def test_commands_without_a_cluster_fail_cleanly(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["cluster", "down"], ["cluster", "add-node"]):
        r = runner.invoke(app, [*args, "--data-dir", str(tmp_path)])
        assert r.exit_code == 1 and "cluster.json" in " ".join(r.output.split()), r.output
    assert cluster_local.node_processes("127.0.0.254") == []


def _loopback_only(pids: list[int]) -> None:
    """Every TCP connection of these processes stays inside 127.0.0.0/8."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[9] not in inodes or f[3] != "01":  # ESTABLISHED only
                continue
            for addr in (f[1], f[2]):
                host = addr.split(":")[0]
                ip = bytes.fromhex(host[-8:])[::-1]  # v4 (or v4-mapped v6), little-endian
                assert ip[0] == 127, f"connection to {ip!r} outside loopback"


@pytest.mark.slow
def test_up_kill_add_node_down_on_a_real_ray_cluster(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    runner = CliRunner()
    d = tmp_path / "cl"
    r = runner.invoke(app, ["--json", "cluster", "up", "--nodes", "3", "--data-dir", str(d)])
    assert r.exit_code == 0, r.output
    try:
        doc = json.loads((d / "cluster.json").read_text())
        assert json.loads(r.stdout) == doc
        assert set(doc) == {"address", "nodes"} and doc["address"].startswith("127.0.0.2:")
        assert [n["name"] for n in doc["nodes"]] == ["node0", "node1", "node2"]
        assert [n["head"] for n in doc["nodes"]] == [True, False, False]
        assert len({n["node_id"] for n in doc["nodes"]}) == 3
        for i, n in enumerate(doc["nodes"]):
            assert set(n) == {"name", "node_id", "raylet_pid", "head"}
            assert cluster_local.raylet_pid(f"127.0.0.{2 + i}") == n["raylet_pid"]
            assert (d / "nodes" / n["name"]).is_dir()
        _loopback_only([p for i in (2, 3, 4) for p in cluster_local.node_processes(f"127.0.0.{i}")])
        # Lose node2 (SIGKILL its whole process tree), then bring it back by name.
        for pid in cluster_local.node_processes("127.0.0.4"):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert cluster_local.raylet_pid("127.0.0.4") is None
        r = runner.invoke(app, ["cluster", "add-node", "--name", "node2", "--data-dir", str(d)])
        assert r.exit_code == 0, r.output
        again = json.loads((d / "cluster.json").read_text())
        back = again["nodes"][2]
        assert back["name"] == "node2" and back["node_id"] != doc["nodes"][2]["node_id"]
        assert back["raylet_pid"] == cluster_local.raylet_pid("127.0.0.4") is not None
        r = runner.invoke(app, ["cluster", "add-node", "--data-dir", str(d)])
        assert r.exit_code == 0, r.output
        assert json.loads((d / "cluster.json").read_text())["nodes"][3]["name"] == "node3"
    finally:
        r = runner.invoke(app, ["cluster", "down", "--data-dir", str(d)])
    assert r.exit_code == 0, r.output
    for i in (2, 3, 4, 5):
        assert cluster_local.node_processes(f"127.0.0.{i}") == []
    assert not (d / "cluster.json").exists()


def test_node_table_is_found_among_rays_own_output() -> None:
    # A raylet's notice printed after the table (seen under load) must not hide it.
    table = [{"node_id": "n1", "ip": "127.0.0.2", "alive": True, "resources": ["lam_node_a"]}]
    out = "\n".join([
        "(raylet) The node with node id: n0 ... has been marked dead because the detector",
        "LAM_NODES " + json.dumps(table),
        "\t(2) raylet has lagging heartbeats due to slow network or busy workload.",
    ])  # fmt: skip
    assert cluster_local.nodes_of(out) == table
    with pytest.raises(cluster_local.ClusterError, match="no node table"):
        cluster_local.nodes_of("\t(2) raylet has lagging heartbeats\n")
