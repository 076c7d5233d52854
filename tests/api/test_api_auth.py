"""Bearer keys: 401 without/with a wrong key, 403 for a read key on a write route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from service.auth import KeyTable
from tests.api.api_support import ClientFactory, assert_error, wait_ready

W = {"Authorization": "Bearer w-key"}
R = {"Authorization": "Bearer r-key"}


def _seed(c: TestClient) -> TestClient:
    assert c.post("/v1/banks", json={"name": "m", "dim": 2}, headers=W).status_code == 201
    one = {"memories": [{"id": "a", "vector": [1, 0]}]}
    assert c.post("/v1/banks/m/memories", json=one, headers=W).status_code == 200
    return c


@pytest.fixture(scope="module")
def auth_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Shared by the tests that change nothing (every request there is refused or a read)."""
    data_dir = tmp_path_factory.mktemp("auth")
    settings = Settings(data_dir=data_dir, api_keys="w-key:write, r-key:read")
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield _seed(c)


WRITES = [
    ("post", "/v1/banks", {"json": {"name": "n", "dim": 2}}),
    ("patch", "/v1/banks/m", {"json": {"beta": 2.0}}),
    ("delete", "/v1/banks/m", {}),
    ("post", "/v1/banks/m/memories", {"json": {"memories": [{"vector": [0, 1]}]}}),
    ("delete", "/v1/banks/m/memories/a", {}),
    ("post", "/v1/banks/m/memories/delete", {"json": {"ids": ["a"]}}),
    ("post", "/v1/banks/m2/snapshot", {"content": b"x"}),
]
READS = [
    ("get", "/v1/banks", {}),
    ("get", "/v1/banks/m", {}),
    ("get", "/v1/banks/m/memories", {}),
    ("get", "/v1/banks/m/memories/a", {}),
    ("get", "/v1/banks/m/snapshot", {}),
    ("get", "/v1/banks/m/diagnostics", {}),
    ("post", "/v1/banks/m/query", {"json": {"queries": [[1, 0]]}}),
    ("post", "/v1/banks/m/energy", {"json": {"states": [[1, 0]]}}),
    ("post", "/v1/banks/m/dynamics", {"json": {"state": [1, 0], "t_max": 0.1}}),
]


@pytest.mark.parametrize(("method", "path", "kw"), WRITES + READS)
def test_missing_or_wrong_key_is_401(
    auth_client: TestClient, method: str, path: str, kw: dict
) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic w-key"},
                    {"Authorization": "Bearer w-ke"}):  # fmt: skip
        r = getattr(auth_client, method)(path, headers=headers, **kw)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "kw"), WRITES)
def test_read_key_on_write_route_is_403(
    auth_client: TestClient, method: str, path: str, kw: dict
) -> None:
    assert_error(getattr(auth_client, method)(path, headers=R, **kw), 403, "forbidden")
    assert auth_client.get("/v1/banks/m", headers=R).json()["count"] == 1


@pytest.mark.parametrize(("method", "path", "kw"), READS)
def test_read_and_write_keys_may_read(
    auth_client: TestClient, method: str, path: str, kw: dict
) -> None:
    for headers in (R, W):
        r = getattr(auth_client, method)(path, headers=headers, **kw)
        assert r.status_code == 200, r.text


def test_write_key_may_write(make_client: ClientFactory) -> None:
    auth_client = _seed(make_client(api_keys="w-key:write,r-key:read"))
    assert auth_client.patch("/v1/banks/m", json={"beta": 3.0}, headers=W).status_code == 200
    assert auth_client.delete("/v1/banks/m", headers=W).status_code == 204


def test_health_and_metrics_stay_open(auth_client: TestClient) -> None:
    assert auth_client.get("/healthz").status_code == 200
    assert auth_client.get("/readyz").status_code == 200
    assert auth_client.get("/metrics").status_code == 200


def test_metrics_auth(make_client: ClientFactory) -> None:
    c = make_client(api_keys="w-key:write,r-key:read", metrics_auth=True)
    assert_error(c.get("/metrics"), 401, "unauthorized")
    assert c.get("/metrics", headers=R).status_code == 200


def test_key_table_parsing() -> None:
    t = KeyTable.parse(" a:read , b:c:write ,")
    assert t.role_of(b"a") == "read" and t.role_of(b"b:c") == "write" and t.role_of(b"x") is None
    assert not KeyTable.parse(None).enabled and not KeyTable.parse("").enabled
    for bad in ("sekrit", "sekrit:admin", ":read", "ok:read,sekrit"):
        with pytest.raises(ValueError) as info:
            KeyTable.parse(bad)
        assert "sekrit" not in str(info.value)  # the message names the entry, never the key


def test_keys_are_not_in_settings_repr() -> None:
    assert "sekrit" not in repr(Settings(api_keys="sekrit:write"))
