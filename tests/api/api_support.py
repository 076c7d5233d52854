"""Helpers shared by the API tests (a plain module: conftest files are not importable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

XI = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.0, 0.5]],
    dtype=np.float32,
)  # (N, d) = (4, 4)
IDS = ["a", "b", "c", "d"]
BETA = 2.0

ClientFactory = Callable[..., TestClient]


def wait_ready(client: TestClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError(f"not ready after {timeout}s: {client.get('/readyz').json()}")


def assert_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is API.md's error envelope with this status (and code)."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "details"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    assert r.headers.get("x-request-id")
    return err  # type: ignore[no-any-return]


def make_bank(client: TestClient, name: str = "m") -> str:
    """A Model B bank (d = 4, β = BETA) holding XI under IDS with payload {"i": row}."""
    r = client.post("/v1/banks", json={"name": name, "dim": 4, "beta": BETA})
    assert r.status_code == 201, r.text
    memories = [
        {"id": i, "vector": v.tolist(), "payload": {"i": n}}
        for n, (i, v) in enumerate(zip(IDS, XI, strict=True))
    ]
    r = client.post(f"/v1/banks/{name}/memories", json={"memories": memories})
    assert r.status_code == 200, r.text
    return name
