"""Helpers of the deployment tests: tools, a real server process, the documented metrics."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


OVERLAYS = ("cpu", "gpu")


INSTALL_HINT = "install it with `bash scripts/install-test-tools.sh` (run by `make test`)"


def require_tool(name: str) -> str:
    """Absolute path of an executable; fails (never skips) the test when it is missing."""
    # The interpreter's bin dir first: pip puts console scripts (hadolint, kubectl) there.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return path


def run_tool(
    argv: list[str], *, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def log_tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def wait_http(server: Server, path: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            r = httpx.get(server.base_url + path, timeout=2)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.25)
    pytest.fail(f"{path} not 200 after {timeout} s ({last}):\n{server.log_tail()}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


_METRIC_ROW = re.compile(
    r"^\|\s*`(?P<name>lam_\w+)`\s*\|\s*(?P<type>\w+)\s*\|\s*(?P<labels>[^|]*)\|"
)


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """name → (type, labels) from the metrics table of docs/internals.md."""
    out: dict[str, tuple[str, set[str]]] = {}
    for line in (REPO / "docs" / "internals.md").read_text().splitlines():
        if m := _METRIC_ROW.match(line):
            # `outcome` (`prefiltered`, ...): the parenthesis lists values, not labels.
            labels = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", m["labels"])))
            out[m["name"]] = (m["type"], labels)
    assert out, "no metric table in docs/internals.md"
    return out


def series_names(name: str, kind: str) -> set[str]:
    """The sample names a metric of this type exposes in the text format."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    return {name}


def documented_series() -> set[str]:
    return {s for name, (kind, _) in documented_metrics().items() for s in series_names(name, kind)}
