"""A real Prometheus scrapes a real server and sees lam_requests_total grow."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import LamServer, free_port


def _prometheus_config(path: Path, target_port: int) -> Path:
    path.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: lam\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    return path


def _poll(url: str, params: dict[str, str], ok: object, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, params=params, timeout=2.0).json()
            if ok(last):  # type: ignore[operator]
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never answered as expected; last answer: {last}")


def test_prometheus_scrapes_request_counters(live_server: LamServer, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:  # CI installs it (scripts/install-test-tools.sh): missing is a failure
        pytest.fail("prometheus binary not found; run scripts/install-test-tools.sh")
    base = live_server.url
    assert httpx.post(f"{base}/v1/banks", json={"name": "p", "dim": 2}).status_code == 201
    mems = {"memories": [{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [0, 1]}]}
    assert httpx.post(f"{base}/v1/banks/p/memories", json=mems).status_code == 200
    for _ in range(3):
        r = httpx.post(f"{base}/v1/banks/p/query", json={"queries": [[1, 0.1]]})
        assert r.status_code == 200

    port = free_port()
    config = _prometheus_config(tmp_path / "prometheus.yml", live_server.port)
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query"
        query = 'lam_requests_total{route="/v1/banks/{bank}/query",method="POST",status="200"}'

        def has_three(answer: object) -> bool:
            result = answer["data"]["result"]  # type: ignore[index]
            return bool(result) and float(result[0]["value"][1]) >= 3

        answer = _poll(api, {"query": query}, has_three)
        assert answer["data"]["result"][0]["metric"]["job"] == "lam"  # type: ignore[index]
        up = _poll(api, {"query": 'lam_bank_memories{bank="p"}'},
                   lambda a: bool(a["data"]["result"]))  # type: ignore[index]  # fmt: skip
        assert float(up["data"]["result"][0]["value"][1]) == 2  # type: ignore[index]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
