"""A real `python -m service` process for reliability tests and scripts (no pytest here).

`LamServer` starts the service on a free loopback port with a given data dir and settings,
waits for /readyz, and stops it by SIGKILL (crash) or SIGTERM (graceful). Its stdout and
stderr go to a log file, so tests can grep what the server printed. The batch helpers give
every stored batch a unique id prefix and vectors derived from the ids, so a later scroll
tells which batches are present, complete, partial or corrupted.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
STORE_FILE = "lam.sqlite3"  # lam_engine.engine.STORE_FILE, named here to skip the torch import


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


# ---- batches with unique prefixes --------------------------------------------------------


def batch_vectors(prefix: str, k: int, dim: int) -> np.ndarray:
    """Deterministic (k, dim) float32 vectors derived from the batch prefix."""
    seed = int.from_bytes(hashlib.sha256(prefix.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal((k, dim)).astype(np.float32)  # (k, d)


def batch_body(prefix: str, dim: int) -> dict[str, Any]:
    k = batch_size_of(prefix)
    xi = batch_vectors(prefix, k, dim)
    return {
        "memories": [
            {"id": f"{prefix}-{j}", "vector": xi[j].tolist(), "payload": {"batch": prefix, "j": j}}
            for j in range(k)
        ]
    }


def scroll_all(client: httpx.Client, bank: str, with_vectors: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, "with_vectors": with_vectors}
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"/v1/banks/{bank}/memories", params=params)
        r.raise_for_status()
        page = r.json()
        out.extend(page["memories"])
        cursor = page["next_cursor"]
        if not cursor:
            return out


@dataclass
class BatchAudit:
    """What a scroll shows about batches: complete, partial, or with a wrong vector/payload."""

    complete: set[str]
    partial: dict[str, int]
    corrupt: set[str]
    total: int


def batch_size_of(prefix: str) -> int:
    """Batches are named `...k<size>`; the size is read back from the prefix."""
    return int(prefix.rpartition("k")[2])


def audit_batches(records: Iterable[dict[str, Any]], dim: int) -> BatchAudit:
    by_prefix: dict[str, dict[int, dict[str, Any]]] = {}
    total = 0
    for rec in records:
        total += 1
        prefix, _, j = rec["id"].rpartition("-")
        by_prefix.setdefault(prefix, {})[int(j)] = rec
    complete: set[str] = set()
    partial: dict[str, int] = {}
    corrupt: set[str] = set()
    for prefix, rows in by_prefix.items():
        k = batch_size_of(prefix)
        if len(rows) != k or set(rows) != set(range(k)):
            partial[prefix] = len(rows)
            continue
        xi = batch_vectors(prefix, k, dim)
        for j, rec in rows.items():
            vec = rec.get("vector")
            if vec is not None and not np.array_equal(np.asarray(vec, np.float32), xi[j]):
                corrupt.add(prefix)
            if rec.get("payload") != {"batch": prefix, "j": j}:
                corrupt.add(prefix)
        complete.add(prefix)
    return BatchAudit(complete, partial, corrupt, total)


def sqlite_check(data_dir: Path) -> tuple[str, int]:
    """(PRAGMA integrity_check, size of the -wal file or -1) of a store no process holds open."""
    db = data_dir / STORE_FILE
    wal = Path(str(db) + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else -1
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return str(result), wal_size


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def figure(name: str, **values: Any) -> str:
    """One greppable line for CI logs: `FIGURE name k=v ...`, printed and returned."""
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    line = f"FIGURE {name} " + " ".join(parts)
    print(line, flush=True)
    return line


def chunks(seq: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


# make_server(name, data_dir=None, start=True, **settings) → LamServer (conftest fixtures).
ServerFactory = Callable[..., LamServer]
