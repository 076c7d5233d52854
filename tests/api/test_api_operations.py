"""Error envelope, request ids, 404/405/500, readiness, metrics exposition."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service import Settings, create_app
from tests.api.api_support import ClientFactory, assert_error, wait_ready


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_health_ready_and_request_ids(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert len(r.headers["x-request-id"]) >= 16
    assert client.get("/readyz").json() == {"status": "ready"}
    r = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    r = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert r.headers["x-request-id"] != "bad id <script>"


def test_readyz_is_503_until_loaded_and_v1_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.deps

    gate = threading.Event()
    real_open = service.deps.Engine.open

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        assert gate.wait(10)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(service.deps.Engine, "open", slow_open)
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        assert_error(c.get("/readyz"), 503, "not_ready")
        r = c.get("/v1/banks")
        assert_error(r, 503, "not_ready")
        assert r.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200
        gate.set()
        wait_ready(c)
        assert c.get("/v1/banks").status_code == 200


def test_failed_load_keeps_readyz_503(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with TestClient(create_app(Settings(data_dir=blocker / "data"))) as c:
        for _ in range(200):
            if c.app.state.rt.load_error:  # type: ignore[attr-defined]
                break
            time.sleep(0.01)
        assert_error(c.get("/readyz"), 503, "load_failed")
        assert c.get("/healthz").status_code == 200


def test_unknown_route_and_method_use_the_envelope(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing/here"), 404, "not_found")
    assert_error(client.put("/v1/banks"), 405, "method_not_allowed")


def test_unexpected_exception_is_500_with_request_id_only(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    engine = client.app.state.rt.engine  # type: ignore[attr-defined]

    def boom() -> None:
        raise RuntimeError("secret internals")

    engine.list_banks = boom
    with caplog.at_level(logging.ERROR, logger="lam.service"):
        r = client.get("/v1/banks", headers={"X-Request-ID": "req-500"})
    err = assert_error(r, 500, "internal_error")
    assert err == {"code": "internal_error", "message": "internal error",
                   "details": {"request_id": "req-500"}}  # fmt: skip
    assert "secret" not in r.text
    assert r.headers["x-request-id"] == "req-500"
    logged = [rec for rec in caplog.records if "req-500" in rec.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_validation_error_is_readable(client: TestClient) -> None:
    err = assert_error(client.post("/v1/banks", json={"name": "x"}), 422, "validation_error")
    assert "dim" in err["message"]
    assert any(d["loc"] == ["body", "dim"] for d in err["details"])


def test_metrics_names_labels_and_route_templates(client: TestClient, bank: str) -> None:
    client.post(f"/v1/banks/{bank}/query", json={"queries": [[1, 0, 0, 0]]})
    client.get(f"/v1/banks/{bank}/memories/zz")
    client.get("/v1/no/such/path/12345")
    s = samples(client)
    query_route = ("route", "/v1/banks/{bank}/query")
    key = ("lam_requests_total", (("method", "POST"), query_route, ("status", "200")))
    assert s[key] == 1
    routes = {dict(labels)["route"] for (name, labels) in s if name == "lam_requests_total"}
    assert "unmatched" in routes and "/v1/banks/{bank}/memories/{memory_id}" in routes
    assert not any(bank in r.split("/") or "12345" in r for r in routes)
    assert s[("lam_errors_total", (("code", "memory_not_found"),))] == 1
    assert s[("lam_bank_memories", (("bank", bank),))] == 4
    assert s[("lam_banks", ())] == 1 and s[("lam_ready", ())] == 1
    assert s[("lam_data_dir_total_bytes", ())] > 0
    assert s[("lam_query_batch_size_count", (("bank", bank),))] == 1
    assert s[("lam_prefilter_queries_total", (("bank", bank), ("outcome", "exact")))] == 1
    assert s[("lam_inflight_requests", ())] == 1  # the scrape itself
    for name in ("lam_request_duration_seconds_count", "lam_query_steps_count",
                 "lam_microbatch_size_count", "lam_bank_memory_bytes",
                 "lam_data_dir_free_bytes"):  # fmt: skip
        assert any(n == name for n, _ in s), name
    client.delete(f"/v1/banks/{bank}")
    assert ("lam_bank_memories", (("bank", bank),)) not in samples(client)


def test_each_app_has_its_own_registry(make_client: ClientFactory) -> None:
    a, b = make_client(), make_client()
    a.get("/healthz")
    key = ("lam_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))
    assert samples(a)[key] == 1
    assert key not in samples(b)


def test_settings_come_from_lam_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAM_PORT", "9123")
    monkeypatch.setenv("LAM_BATCH_WINDOW_MS", "0")
    monkeypatch.setenv("LAM_LOG_LEVEL", "DEBUG")
    s = Settings()
    assert (s.port, s.batch_window_ms, s.log_level, s.batching_enabled) == (
        9123,
        0.0,
        "debug",
        False,
    )
    assert (s.host, s.max_store_batch, s.max_query_batch, s.max_body_bytes) == (
        "127.0.0.1", 10_000, 1024, 64 << 20,
    )  # fmt: skip


def test_nesting_too_deep_for_any_parser_is_400(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson ≥ 3.9 refuses nesting deeper than 1024; the stdlib parser that tells NaN from
    broken JSON then recurses past Python's limit. That is a 400, not a 500 (found in a fresh
    venv, whose orjson was newer than the dev machine's). Older orjson is made to refuse too."""
    import orjson

    import service.bodies as bodies

    def refuse(raw: bytes) -> Any:
        raise orjson.JSONDecodeError("depth limit exceeded", raw.decode(), 1025)

    monkeypatch.setattr(bodies.orjson, "loads", refuse)
    deep = b'{"name": "x", "dim": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    r = client.post("/v1/banks", content=deep, headers={"content-type": "application/json"})
    assert_error(r, 400, "malformed_json")
    monkeypatch.undo()
    assert client.get("/v1/banks").json()["banks"] == []
