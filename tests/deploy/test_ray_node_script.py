"""docker/ray-node.sh (lam-ray-node in the image) runs the `ray start` the manifests promise.

`ray` is a stub on a PATH that holds no other Ray: it records every call (argv and the
environment it saw), answers `health-check` as the test says and, for `start --block`,
blocks like the real one until signalled. The script itself runs for real (bash), so the
head/worker choice, the node's resource from the pod's name, the wait for the head, the
router's resource-less node and SIGTERM → `ray stop` are its own behaviour. Never the real
`ray stop`: it would stop every Ray process of this machine.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deploy_support import REPO, free_port

SCRIPT = REPO / "docker" / "ray-node.sh"
HEAD = "lam-ray-0.lam-ray-headless:6379"
POD_IP = "10.255.37.41"  # no real raylet anywhere has it

STUB = f"""#!{sys.executable}
import json, os, pathlib, sys, time
log = pathlib.Path(os.environ["STUB_LOG"])
n = len(list(log.iterdir()))
keep = ("RAY_USAGE_STATS_ENABLED", "LAM_NODE_DATA_DIR")
(log / f"{{n:04d}}.json").write_text(json.dumps(
    {{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keep}}}}))
if sys.argv[1] == "health-check":
    fails = log.parent / "health_fails"
    left = int(fails.read_text()) if fails.exists() else 0
    if left:
        fails.write_text(str(left - 1))
        sys.exit(1)
    sys.exit(0)
if sys.argv[1] == "start" and "--block" in sys.argv:
    time.sleep(float(os.environ.get("STUB_BLOCK_S", "0")))
sys.exit(int(os.environ.get("STUB_RC", "0")))
"""


class Stub:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.log = root / "log"
        self.bin.mkdir()
        self.log.mkdir()
        ray = self.bin / "ray"
        ray.write_text(STUB)
        ray.chmod(0o755)
        self.path = os.pathsep.join([str(self.bin), "/usr/bin", "/bin"])
        assert shutil.which("ray", path=self.path) == str(ray), "a real ray would be called"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": self.path,
            "STUB_LOG": str(self.log),
            "POD_IP": POD_IP,
            "LAM_RAY_ADDRESS": HEAD,
            "LAM_RAY_OBJECT_STORE_BYTES": "2000000000",
            "LAM_RAY_NUM_CPUS": "4",
            "LAM_NODE_DATA_DIR": "/data",
            "LAM_RAY_WAIT_S": "0.05",
        }
        env.update(extra)
        return env

    def fail_health_checks(self, n: int) -> None:
        (self.log.parent / "health_fails").write_text(str(n))

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.log.iterdir())]


@pytest.fixture
def stub(tmp_path: Path) -> Stub:
    return Stub(tmp_path)


def run(args: list[str], env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_ordinal_0_is_the_head_with_its_own_resource(stub: Stub) -> None:
    proc = run(["node"], stub.env(POD_NAME="lam-ray-0"))
    assert proc.returncode == 0, proc.stderr
    (call,) = stub.calls()  # the head waits for nobody
    argv = call["argv"]
    assert argv[:4] == ["start", "--head", "--port", "6379"] and argv[-1] == "--block"
    assert "--address" not in argv and "--include-dashboard=false" in argv
    assert json.loads(flag(argv, "--resources")) == {"lam_node_lam-ray-0": 1}
    assert flag(argv, "--node-ip-address") == POD_IP
    assert flag(argv, "--object-store-memory") == "2000000000"
    assert flag(argv, "--num-cpus") == "4"
    assert "--disable-usage-stats" in argv
    assert call["env"] == {"RAY_USAGE_STATS_ENABLED": "0", "LAM_NODE_DATA_DIR": "/data"}


def test_a_worker_waits_for_the_head_then_joins_it(stub: Stub) -> None:
    stub.fail_health_checks(3)
    proc = run(["node"], stub.env(POD_NAME="lam-ray-12"))
    assert proc.returncode == 0, proc.stderr
    calls = [c["argv"] for c in stub.calls()]
    assert calls[:4] == [["health-check", "--address", HEAD]] * 4  # 3 failures, then up
    (start,) = calls[4:]
    assert start[:3] == ["start", "--address", HEAD] and start[-1] == "--block"
    assert "--head" not in start
    assert json.loads(flag(start, "--resources")) == {"lam_node_lam-ray-12": 1}
    assert proc.stderr.count("waiting for the head") == 3


def test_a_ray_failure_ends_the_pod(stub: Stub) -> None:
    # `ray start --block` exits 1 when a Ray process dies: the container must exit with it
    # (Kubernetes restarts it and it rejoins), not hang on.
    proc = run(["node"], stub.env(POD_NAME="lam-ray-1", STUB_RC="1"))
    assert proc.returncode == 1


def test_the_router_node_has_no_lam_resource_and_then_runs_the_server(stub: Stub) -> None:
    stub.fail_health_checks(1)
    proc = run(["router", "bash", "-c", 'echo "served $0"', "x"], stub.env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "served x\n"
    calls = [c["argv"] for c in stub.calls()]
    assert calls[:2] == [["health-check", "--address", HEAD]] * 2
    (start,) = calls[2:]
    assert start[:3] == ["start", "--address", HEAD] and "--block" not in start
    assert flag(start, "--num-cpus") == "0"
    assert "--resources" not in start  # no lam_node_: no replica is ever placed on the router
    assert flag(start, "--node-ip-address") == POD_IP


def test_sigterm_stops_ray_gracefully(stub: Stub) -> None:
    env = stub.env(POD_NAME="lam-ray-0", STUB_BLOCK_S="60", LAM_RAY_STOP_GRACE_S="7")
    proc = subprocess.Popen(["bash", str(SCRIPT), "node"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not stub.calls() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stub.calls(), "ray start never ran"
        time.sleep(0.3)  # the trap is set right after the start
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc != 0  # terminated, not a clean `ray start` exit
    calls = [c["argv"] for c in stub.calls()]
    assert calls[1:] == [["stop", "--grace-period", "7"]]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["node"], {"POD_NAME": "lam-ray-0", "LAM_RAY_ADDRESS": ""}, "LAM_RAY_ADDRESS is not set"),
        (["node"], {"POD_NAME": "lam-ray"}, "is not <statefulset>-<ordinal>"),
        (["node"], {"POD_NAME": "lam-ray-0", "LAM_RAY_ADDRESS": "head"}, "is not host:port"),
        (["node"], {"POD_NAME": "lam-nodes-1"}, "is not the head pod lam-nodes-0"),
        (["node"], {"POD_NAME": "lam-ray-0", "POD_IP": ""}, "POD_IP is not set"),
        (["router"], {}, "no command to run"),
        (["serve"], {}, "usage:"),
    ],
)
def test_bad_settings_fail_with_a_message_and_never_start_ray(
    stub: Stub, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = run(args, stub.env(**env))
    assert proc.returncode == 64 and message in proc.stderr, proc.stderr
    assert [c["argv"][0] for c in stub.calls()] == []


@pytest.fixture
def raylet(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A process named raylet (its comm) started with this pod's address, like Ray's."""
    exe = tmp_path / "raylet"
    exe.symlink_to(Path(sys.executable).resolve())
    proc = subprocess.Popen(
        [str(exe), "-c", "import time; time.sleep(120)", f"--node_ip_address={POD_IP}"]
    )
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "raylet":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield proc
    proc.kill()
    proc.wait()


def test_alive_and_ready_see_this_pods_raylet(stub: Stub, raylet: subprocess.Popen) -> None:
    assert run(["alive"], stub.env()).returncode == 0
    other = run(["alive"], stub.env(POD_IP="10.255.37.42"))
    assert other.returncode == 1 and "no raylet for 10.255.37.42" in other.stderr
    assert run(["ready"], stub.env()).returncode == 0
    assert [c["argv"] for c in stub.calls()] == [["health-check", "--address", HEAD]]
    stub.fail_health_checks(1)  # the head's GCS does not answer: not ready, still alive
    assert run(["ready"], stub.env()).returncode != 0
    assert run(["alive"], stub.env()).returncode == 0
    raylet.kill()
    raylet.wait()
    assert run(["alive"], stub.env()).returncode == 1
    assert run(["ready"], stub.env()).returncode == 1


class _Health(http.server.BaseHTTPRequestHandler):
    """/healthz 200, anything else 404: the server's side of `alive PATH`."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_alive_with_a_path_also_asks_the_server(
    stub: Stub, raylet: subprocess.Popen, health_port: int
) -> None:
    port = str(health_port)
    assert run(["alive", "/healthz"], stub.env(LAM_PORT=port)).returncode == 0
    missing = run(["alive", "/no-such-page"], stub.env(LAM_PORT=port))
    assert missing.returncode == 1 and "answered 404" in missing.stderr
    closed = run(["alive", "/healthz"], stub.env(LAM_PORT=str(free_port())))
    assert closed.returncode == 1
