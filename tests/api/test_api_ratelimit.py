"""LAM_RATE_LIMIT: 429 `rate_limited` with Retry-After, per client, /v1 only, changes nothing."""

from __future__ import annotations

import pydantic
import pytest

from service import Settings
from tests.api.api_support import ClientFactory, assert_error, make_bank


def test_over_the_limit_is_429_with_retry_after(make_client: ClientFactory) -> None:
    c = make_client(rate_limit="4/minute")
    make_bank(c)  # 2 requests: create + store
    assert c.get("/v1/banks").status_code == 200
    assert c.get("/v1/banks/m").status_code == 200
    r = c.get("/v1/banks")
    err = assert_error(r, 429, "rate_limited")
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 60
    assert err["details"] == {"limit": "4 per 1 minute", "retry_after_s": retry}
    # Health, readiness and metrics are never limited.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert c.get(path).status_code == 200, path
    errors = c.get("/metrics").text
    assert 'lam_errors_total{code="rate_limited"} 1.0' in errors


def test_a_limited_write_changes_nothing(make_client: ClientFactory) -> None:
    c = make_client(rate_limit="3/minute")
    make_bank(c)
    assert c.get("/v1/banks/m").json()["count"] == 4
    r = c.post("/v1/banks/m/memories", json={"memories": [{"id": "z", "vector": [1, 1, 1, 1]}]})
    assert_error(r, 429, "rate_limited")
    assert c.app.state.rt.engine.bank_info("m").count == 4


def test_each_key_has_its_own_budget(make_client: ClientFactory) -> None:
    c = make_client(api_keys="k1:write,k2:read", rate_limit="2/minute")
    one = {"Authorization": "Bearer k1"}
    two = {"Authorization": "Bearer k2"}
    assert [c.get("/v1/banks", headers=one).status_code for _ in range(3)] == [200, 200, 429]
    assert [c.get("/v1/banks", headers=two).status_code for _ in range(2)] == [200, 200]


def test_every_window_must_hold(make_client: ClientFactory) -> None:
    c = make_client(rate_limit="100/minute;2/second")
    assert [c.get("/v1/banks").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("spec", ["fast", "10 per", "-1/second", "5/fortnight"])
def test_a_bad_setting_is_refused_at_start(spec: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="LAM_RATE_LIMIT"):
        Settings(rate_limit=spec)


def test_unset_or_blank_means_no_limit() -> None:
    assert Settings().rate_limit is None
    assert Settings(rate_limit="  ").rate_limit is None
