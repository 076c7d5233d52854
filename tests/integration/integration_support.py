"""A real server process for the integration tests: `python -m service` on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: drain, then close the store); 0 when it shut down cleanly.

        uvicorn re-raises the SIGTERM it caught once its shutdown is complete, so a clean
        exit shows up as -SIGTERM; a kill after the timeout shows up as -SIGKILL.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = int(self.process.returncode)
        return 0 if code == -signal.SIGTERM else code


def start_server(data_dir: Path, log: Path, timeout: float = 60.0, **env: str) -> LiveServer:
    port = free_port()
    environ = {**os.environ, "LAM_HOST": "127.0.0.1", "LAM_PORT": str(port),
               "LAM_DATA_DIR": str(data_dir), "LAM_LOG_LEVEL": "warning", **env}  # fmt: skip
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=environ, stdout=out, stderr=out
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, data_dir, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server not ready within {timeout}s: {log.read_text()[-2000:]}")
