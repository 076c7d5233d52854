"""A real Ray cluster on this one machine, for trying sharded banks (API.md "Sharded banks").

Each node is its own `ray start` process tree (a head, then worker nodes joining it) with
its own loopback address — 127.0.0.2 for the head, .3, .4, … — because Ray rewrites
127.0.0.1 and localhost to the machine's outward address, and nothing here may talk there.
Each node has its own data directory `D/nodes/<name>/` (handed to the node's processes as
LAM_NODE_DATA_DIR: a shard replica stores there), a custom resource `lam_node_<name>` (so
placement survives a restart, which changes Ray's node ids), a small object store and no
usage stats. `D/cluster.json` is API.md's file; `D/nodes/<name>/node.json` keeps what a
restart of that node needs (its address).

A node's processes are found by their command lines (every Ray process of a node names its
node address in an `--…ip…=` argument) and their descendants; `down` and a node's stop
signal only those, never Ray's `ray stop` (which stops every Ray process of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEAD_IP = "127.0.0.2"
OBJECT_STORE_BYTES = 100 * 1000 * 1000  # three nodes fit in a few GB with room to spare
CLUSTER_FILE = "cluster.json"


class ClusterError(RuntimeError):
    """The cluster could not be started, found or stopped (the message says why)."""


@dataclass
class NodeSpec:
    name: str
    ip: str
    head: bool
    data_dir: Path

    @property
    def resource(self) -> str:
        return f"lam_node_{self.name}"


def node_ip(index: int) -> str:
    """The loopback address of node `index` (0 = the head)."""
    if not 0 <= index < 250:
        raise ClusterError("at most 250 nodes on one machine")
    return f"127.0.0.{2 + index}"


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _env(spec: NodeSpec) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", LAM_NODE_DATA_DIR=str(spec.data_dir))
    return env


def _ray(args: list[str], spec: NodeSpec, timeout: float = 120.0) -> None:
    cmd = [sys.executable, "-m", "ray.scripts.scripts", *args]
    try:
        proc = subprocess.run(
            cmd, env=_env(spec), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:  # pragma: no cover - python itself missing
        raise ClusterError(str(exc)) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ClusterError(f"ray start failed for node {spec.name!r}: " + " | ".join(tail))


def _common(spec: NodeSpec, num_cpus: int) -> list[str]:
    return [
        "--node-ip-address",
        spec.ip,
        "--resources",
        json.dumps({spec.resource: 1}),
        "--object-store-memory",
        str(OBJECT_STORE_BYTES),
        "--num-cpus",
        str(num_cpus),
        "--disable-usage-stats",
    ]


def start_head(spec: NodeSpec, num_cpus: int) -> str:
    """Start the head node; returns the cluster's address (GCS, "ip:port")."""
    port = free_port(spec.ip)
    args = ["start", "--head", "--port", str(port), *_common(spec, num_cpus)]
    args += ["--include-dashboard=false", "--dashboard-host", spec.ip]
    args += ["--dashboard-port", str(free_port(spec.ip))]
    _ray(args, spec)
    return f"{spec.ip}:{port}"


def start_worker(spec: NodeSpec, address: str, num_cpus: int) -> None:
    _ray(["start", "--address", address, *_common(spec, num_cpus)], spec)


# ---- processes ------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def node_processes(ip: str) -> list[int]:
    """The live processes of the node at `ip`: those naming it, and their descendants."""
    pattern = re.compile(r"^--[\w-]*ip[\w-]*=" + re.escape(ip) + r"(:\d+)?$")
    stats = {pid: st for pid in _pids() if (st := _stat(pid)) is not None and st[0] != "Z"}
    roots = {
        pid for pid in stats if any(pattern.match(a) for a in _cmdline(pid)) and pid != os.getpid()
    }
    found = set(roots)
    grew = True
    while grew:
        kids = {pid for pid, (_, ppid) in stats.items() if ppid in found} - found
        grew = bool(kids)
        found |= kids
    return sorted(found)


def raylet_pid(ip: str) -> int | None:
    for pid in node_processes(ip):
        argv = _cmdline(pid)
        if argv and argv[0].endswith("/raylet"):
            return pid
    return None


def stop_node(ip: str, grace: float = 10.0) -> int:
    """SIGTERM the node's processes, SIGKILL what is left after `grace`; returns how many."""
    pids = node_processes(ip)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and node_processes(ip):
        time.sleep(0.2)
    for pid in node_processes(ip):
        _signal(pid, signal.SIGKILL)
    return len(pids)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# ---- what Ray says --------------------------------------------------------------------------
_NODES_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], _node_ip_address=sys.argv[2], logging_level="ERROR",
         log_to_driver=False)
table = [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
          "resources": sorted(n.get("Resources", {}))} for n in ray.nodes()]
print("LAM_NODES", json.dumps(table), flush=True)
"""
# The line of the script's stdout that holds the table: Ray's own processes may print to the
# same stdout after it (seen: a raylet's "lagging heartbeats" notice under load).
_NODES_MARK = "LAM_NODES "


def ray_nodes(address: str) -> list[dict[str, Any]]:
    """Ray's node table (a short-lived driver on the head's address, in a subprocess)."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    ip = address.rsplit(":", 1)[0]
    proc = subprocess.run(
        [sys.executable, "-c", _NODES_SCRIPT, address, ip],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ClusterError("cannot reach the cluster at " + address + ": " + proc.stderr[-300:])
    return nodes_of(proc.stdout)


def nodes_of(stdout: str) -> list[dict[str, Any]]:
    """The node table in the output of _NODES_SCRIPT, whatever else Ray printed around it."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(_NODES_MARK):
            return list(json.loads(line[len(_NODES_MARK) :]))
    raise ClusterError("no node table in Ray's answer: " + stdout[-300:])


def wait_alive(
    address: str,
    specs: list[NodeSpec],
    timeout: float = 60.0,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Node ids of `specs` once Ray lists each alive with its resource; {name: node_id}.

    `exclude`: ids of a node's previous life (the GCS lists a killed node alive until its
    health checks fail), so a node brought back is waited for under its new id.
    """
    deadline = time.monotonic() + timeout
    while True:
        nodes = [n for n in ray_nodes(address) if n["alive"] and n["node_id"] not in exclude]
        ids = {}
        for spec in specs:
            match = [n for n in nodes if spec.resource in n["resources"]]
            if match:
                ids[spec.name] = match[0]["node_id"]
        if len(ids) == len(specs):
            return ids
        if time.monotonic() > deadline:
            missing = sorted({s.name for s in specs} - set(ids))
            raise ClusterError(f"nodes not alive after {timeout:.0f} s: {missing}")
        time.sleep(0.5)


# ---- the cluster directory D -----------------------------------------------------------------
def _spec_of(directory: Path, name: str) -> NodeSpec:
    meta = json.loads((directory / "nodes" / name / "node.json").read_text())
    return NodeSpec(name, meta["ip"], bool(meta["head"]), directory / "nodes" / name)


def _new_spec(directory: Path, name: str, index: int) -> NodeSpec:
    spec = NodeSpec(name, node_ip(index), index == 0, directory / "nodes" / name)
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    (spec.data_dir / "node.json").write_text(
        json.dumps({"name": name, "ip": spec.ip, "head": spec.head})
    )
    return spec


def read_cluster(directory: Path) -> dict[str, Any]:
    path = directory / CLUSTER_FILE
    if not path.exists():
        raise ClusterError(f"no cluster in {directory} ({CLUSTER_FILE} missing): run `up` first")
    return dict(json.loads(path.read_text()))


def _write_cluster(
    directory: Path, address: str, specs: list[NodeSpec], ids: dict[str, str]
) -> dict[str, Any]:
    doc = {
        "address": address,
        "nodes": [
            {
                "name": s.name,
                "node_id": ids.get(s.name),
                "raylet_pid": raylet_pid(s.ip),
                "head": s.head,
            }
            for s in specs
        ],
    }
    tmp = directory / (CLUSTER_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, directory / CLUSTER_FILE)
    return doc


def up(directory: Path, nodes: int, *, num_cpus: int = 1) -> dict[str, Any]:
    """Start a head and nodes − 1 workers; writes and returns D/cluster.json."""
    if nodes < 1:
        raise ClusterError("--nodes must be ≥ 1")
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CLUSTER_FILE).exists():
        doc = read_cluster(directory)
        if any(raylet_pid(_spec_of(directory, n["name"]).ip) for n in doc["nodes"]):
            raise ClusterError(f"a cluster of {directory} is running: `down` it first")
    if node_processes(HEAD_IP):
        raise ClusterError(f"{HEAD_IP} already runs Ray processes (another cluster?)")
    specs = [_new_spec(directory, f"node{i}", i) for i in range(nodes)]
    address = start_head(specs[0], num_cpus)
    try:
        for spec in specs[1:]:
            start_worker(spec, address, num_cpus)
        ids = wait_alive(address, specs)
    except BaseException:
        for spec in reversed(specs):
            stop_node(spec.ip)
        raise
    return _write_cluster(directory, address, specs, ids)


def add_node(directory: Path, name: str | None = None, *, num_cpus: int = 1) -> dict[str, Any]:
    """Add a worker node (a new one, or bring back the stopped node `name`, its data kept)."""
    doc = read_cluster(directory)
    names = [n["name"] for n in doc["nodes"]]
    specs = [_spec_of(directory, n) for n in names]
    if name in names:
        spec = specs[names.index(name)]
        if spec.head:
            raise ClusterError("the head cannot be re-added: `down`, then `up` again")
        if raylet_pid(spec.ip):
            raise ClusterError(f"node {name!r} is running")
        stop_node(spec.ip, grace=2.0)  # what a killed raylet left behind
    else:
        name = name or next(f"node{i}" for i in range(len(names) + 250) if f"node{i}" not in names)
        used = {s.ip for s in specs}
        index = next(i for i in range(1, 250) if node_ip(i) not in used)
        spec = _new_spec(directory, name, index)
        specs.append(spec)
    start_worker(spec, doc["address"], num_cpus)
    ids = {n["name"]: n["node_id"] for n in doc["nodes"]}
    old = frozenset(str(i) for i in ids.values() if i)
    ids.update(wait_alive(doc["address"], [spec], exclude=old))
    return _write_cluster(directory, doc["address"], specs, ids)


def down(directory: Path) -> int:
    """Stop every node of the cluster (workers first, the head last); returns processes ended."""
    doc = read_cluster(directory)
    specs = [_spec_of(directory, n["name"]) for n in doc["nodes"]]
    ended = sum(stop_node(s.ip) for s in sorted(specs, key=lambda s: s.head))
    (directory / CLUSTER_FILE).unlink()
    return ended
