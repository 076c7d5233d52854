"""Auth on every /v1 route (enumerated from /openapi.json), timing-safe comparison, no secret leaks.

The server runs with LAM_LOG_LEVEL=debug (access log on); after the matrix its whole output,
/metrics and every error body are searched for the keys, tracebacks and file paths.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import httpx
import pytest

from tests.reliability.rel_harness import REPO, LamServer, ServerFactory, figure

WRITE_KEY = "wk-3f9c1e7a0b5d4c2e8f6a1b3c5d7e9f01"
READ_KEY = "rk-8e2d4f6a1c3b5e7d9f0a2c4e6b8d0f13"
NEAR_MISSES = [
    WRITE_KEY[:-1],  # a prefix of the real key
    WRITE_KEY + "0",  # the real key and one more byte
    WRITE_KEY.upper(),
    "wk-" + "0" * (len(WRITE_KEY) - 3),  # same length, wrong bytes
    "x",
]
READ_ROUTES = {("POST", "/v1/banks/{bank}/query"), ("POST", "/v1/banks/{bank}/energy"),
               ("POST", "/v1/banks/{bank}/dynamics"), ("POST", "/v1/banks/{bank}/memories/scroll"),
               ("POST", "/v1/banks/{bank}/memories/count")}  # fmt: skip
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/banks/{bank}/query"): {"queries": [[1.0, 0.0, 0.0, 0.0]]},
    ("POST", "/v1/banks/{bank}/energy"): {"states": [[1.0, 0.0, 0.0, 0.0]]},
    ("POST", "/v1/banks/{bank}/dynamics"): {"state": [1.0, 0.0, 0.0, 0.0], "t_max": 0.05},
    ("POST", "/v1/banks"): {"name": "never", "dim": 4},
    ("POST", "/v1/banks/{bank}/memories"): {"memories": [{"id": "x", "vector": [1, 0, 0, 0]}]},
    ("POST", "/v1/banks/{bank}/memories/delete"): {"ids": ["m0"]},
    ("POST", "/v1/banks/{bank}/memories/scroll"): {"limit": 2},
    ("POST", "/v1/banks/{bank}/memories/count"): {},
    ("PATCH", "/v1/banks/{bank}"): {"beta": 3.0},
}
SEEN: list[str] = []  # every response body, searched for leaks at the end


@pytest.fixture(scope="module")
def auth_server(make_module_server: ServerFactory) -> LamServer:
    return make_module_server(
        "auth", api_keys=f"{WRITE_KEY}:write,{READ_KEY}:read", log_level="debug"
    )


def _routes(server: LamServer) -> list[tuple[str, str]]:
    spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
    return sorted(
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        if path.startswith("/v1/")
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    )


def _needs_write(method: str, path: str) -> bool:
    return method != "GET" and (method, path) not in READ_ROUTES


def _call(
    server: LamServer, method: str, path: str, key: str | None, scheme: str = "Bearer"
) -> httpx.Response:
    url = server.url + path.replace("{bank}", "authb").replace("{name}", "authb")
    url = url.replace("{memory_id}", "m0")
    headers = {} if key is None else {"Authorization": f"{scheme} {key}".strip()}
    body = BODIES.get((method, path))
    r = httpx.request(method, url, json=body, headers=headers, timeout=30)
    SEEN.append(r.text)
    return r


def _assert_refused(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    err = r.json()["error"]
    assert err["code"] == ("unauthorized" if status == 401 else "forbidden"), err
    if status == 401:
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.fixture(scope="module")
def routes(auth_server: LamServer) -> list[tuple[str, str]]:
    h = {"Authorization": f"Bearer {WRITE_KEY}"}
    r = httpx.post(auth_server.url + "/v1/banks", json={"name": "authb", "dim": 4}, headers=h)
    assert r.status_code == 201, r.text
    mems = [{"id": "m0", "vector": [1, 0, 0, 0]}, {"id": "m1", "vector": [0, 1, 0, 0]}]
    r = httpx.post(f"{auth_server.url}/v1/banks/authb/memories", json={"memories": mems}, headers=h)
    assert r.status_code == 200, r.text
    found = _routes(auth_server)
    assert len(found) >= 15, found
    return found


def test_every_v1_route_refuses_missing_wrong_and_underprivileged_keys(
    auth_server: LamServer, routes: list[tuple[str, str]]
) -> None:
    checked = 0
    for method, path in routes:
        _assert_refused(_call(auth_server, method, path, None), 401)
        _assert_refused(_call(auth_server, method, path, ""), 401)
        _assert_refused(_call(auth_server, method, path, WRITE_KEY, scheme="Basic"), 401)
        for wrong in NEAR_MISSES:
            _assert_refused(_call(auth_server, method, path, wrong), 401)
        if _needs_write(method, path):
            _assert_refused(_call(auth_server, method, path, READ_KEY), 403)
        else:
            for key in (READ_KEY, WRITE_KEY):
                r = _call(auth_server, method, path, key)
                assert r.status_code == 200, (method, path, r.text)
        checked += 1
    writes = sum(_needs_write(m, p) for m, p in routes)
    figure("auth_matrix", routes=checked, write_routes=writes, read_routes=checked - writes)
    # Nothing changed through all those refusals.
    h = {"Authorization": f"Bearer {READ_KEY}"}
    info = httpx.get(auth_server.url + "/v1/banks/authb", headers=h).json()
    assert (info["count"], info["beta"]) == (2, 1.0)


def test_key_comparison_is_timing_safe() -> None:
    """Static: every key check goes through hmac.compare_digest over all keys, no early exit."""
    source = (REPO / "service" / "auth.py").read_text()
    tree = ast.parse(source)
    role_of = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "role_of"
    )
    loops = [n for n in ast.walk(role_of) if isinstance(n, ast.For)]
    assert loops, "role_of must scan every configured key"
    for loop in loops:
        exits = [n for n in ast.walk(loop) if isinstance(n, (ast.Return, ast.Break))]
        assert exits == [], "an early exit reveals which key (or how many) matched"
    calls = {ast.unparse(n.func) for n in ast.walk(role_of) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls and "len" not in calls, calls
    # No key is compared with == / != / startswith anywhere in the module.
    for node in ast.walk(tree):
        equality = isinstance(node, ast.Compare) and any(
            isinstance(o, (ast.Eq, ast.NotEq)) for o in node.ops
        )
        if equality:
            text = ast.unparse(node)
            assert not re.search(r"\b(key|token|presented|secret)\b", text), text
    assert "startswith(" not in ast.unparse(role_of)


def test_keys_never_logged_and_no_leaks(
    auth_server: LamServer, routes: list[tuple[str, str]]
) -> None:
    r = httpx.get(auth_server.url + "/metrics", timeout=30)
    assert r.status_code == 200
    SEEN.append(r.text)
    log = auth_server.log_text()
    # Without the access log the check below would be blind.
    assert "GET /v1/banks" in log or "POST /v1/banks" in log, "debug access log missing"
    secrets = [WRITE_KEY, READ_KEY, *[k for k in NEAR_MISSES if len(k) > 4]]
    leaks = [k for k in secrets if k in log or any(k in body for body in SEEN)]
    paths = [b for b in SEEN if "Traceback" in b or re.search(r'File "|/work/|/tmp/|\.py\b', b)]
    figure("auth_leaks", responses_scanned=len(SEEN), log_bytes=len(log), key_leaks=len(leaks),
           trace_or_path_leaks=len(paths))  # fmt: skip
    assert leaks == []
    assert paths == [], paths[:3]
    assert "Traceback" not in log
