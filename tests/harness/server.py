"""The one server factory: a real `python -m service` process on a free loopback port.

`LamServer` starts the service with a given data dir and settings, waits for /readyz, and
stops it by SIGKILL (crash) or SIGTERM (graceful); stdout and stderr go to a log file, so
tests can grep what the server printed. No pytest here: scripts use it too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LamServer:
    """One service process at a time over a fixed data dir; start() again after a stop."""

    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0
    startup_seconds: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90.0) -> float:
        """Spawn the server, wait for /readyz 200; returns the seconds it took."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAM_")}
        env.update(
            LAM_HOST="127.0.0.1",
            LAM_PORT=str(self.port),
            LAM_DATA_DIR=str(self.data_dir),
            LAM_DEVICE="cpu",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        t0 = time.perf_counter()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start #{self.starts} port {self.port} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self.wait_ready(timeout)
        took = time.perf_counter() - t0
        self.startup_seconds.append(took)
        return took

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2.0)
                if r.status_code == 200:
                    return
                last = r.text
                if "load_failed" in last:  # the store could not be opened: final, no retry
                    raise TimeoutError(f"never ready ({last}): {self.tail()}")
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise TimeoutError(f"not ready after {timeout}s ({last}): {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Teardown: graceful if possible, SIGKILL otherwise."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(20.0)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_kb(self) -> int:
        """Resident set size of the server process (VmRSS of /proc/<pid>/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, n: int = 3000) -> str:
        return self.log_text()[-n:]
