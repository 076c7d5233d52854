"""The console with API keys (LAM_API_KEYS="rk:read,wk:write"): 401 and 403 shown as such."""

from __future__ import annotations

from typing import Any

import httpx

from tests.harness import LamServer

# chromium logs every refused fetch as a console error; these tests expect exactly those.
REFUSED = ("status of 401", "status of 403")


def enter_key(page: Any, key: str) -> None:
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", key)
    page.click('#key-form button[value="save"]')


def test_refused_without_a_key(page: Any, guard: Any, auth_server: LamServer) -> None:
    guard.allowed.extend(REFUSED[:1])
    page.goto(auth_server.url + "/ui")
    page.wait_for_selector("#key-dialog[open]")
    assert "401" in page.inner_text("#key-reason")
    page.click('#key-form button[value="cancel"]')
    error = page.wait_for_selector("#bank-list .error")
    assert error.get_attribute("data-status") == "401"
    assert error.inner_text().startswith("401 unauthorized")


def test_read_key_reads_but_may_not_write(
    page: Any, guard: Any, auth_server: LamServer, shoot: Any
) -> None:
    guard.allowed.extend(REFUSED)
    page.goto(auth_server.url + "/ui")
    enter_key(page, "rk")
    page.wait_for_selector('tr[data-bank="digits"]')
    # The key lives in this tab's sessionStorage only, and goes out as a Bearer header.
    assert page.evaluate("sessionStorage.getItem('lam.apiKey')") == "rk"
    assert page.evaluate("localStorage.length") == 0
    page.wait_for_load_state("networkidle")  # a reload cancels what is in flight (ERR_ABORTED)
    with page.expect_request(lambda r: r.url.endswith("/v1/banks")) as req:
        page.reload()
    assert req.value.headers.get("authorization") == "Bearer rk"
    page.wait_for_selector('tr[data-bank="digits"]')

    # Reading works: the playground completes a digit with the read key.
    page.goto(auth_server.url + "/ui/#/play/digits")
    page.wait_for_selector("#pixel-grid .px")
    page.click("#hide-bottom")
    page.click("#run-query")
    page.wait_for_selector("#completed")

    # Writing does not: create and delete answer 403, shown as such; nothing changed.
    page.goto(auth_server.url + "/ui/#/banks")
    page.wait_for_selector('tr[data-bank="digits"]')
    page.fill("#new-name", "nope")
    page.click("#create-bank")
    error = page.wait_for_selector("#banks-message .error")
    assert error.get_attribute("data-status") == "403"
    assert error.inner_text().startswith("Creating bank nope failed. 403 forbidden")
    page.click('button[data-bank="digits"]')
    page.click("#confirm-yes")
    refused = page.wait_for_selector("#banks-message .error >> text=Deleting bank digits")
    assert "failed. 403 forbidden" in refused.inner_text()
    shoot(page, "ui-forbidden.png")
    wk = {"Authorization": "Bearer wk"}
    assert httpx.get(auth_server.url + "/v1/banks/digits", headers=wk).status_code == 200
    assert httpx.get(auth_server.url + "/v1/banks/nope", headers=wk).status_code == 404


def test_write_key_writes(page: Any, guard: Any, auth_server: LamServer) -> None:
    guard.allowed.extend(REFUSED[:1])  # the first load, before the key is given
    page.goto(auth_server.url + "/ui")
    enter_key(page, "wk")
    page.wait_for_selector('tr[data-bank="digits"]')
    page.fill("#new-name", "keyed")
    page.click("#create-bank")
    page.wait_for_selector('tr[data-bank="keyed"]')
    page.click('button[data-bank="keyed"]')
    page.click("#confirm-yes")
    page.wait_for_selector('tr[data-bank="keyed"]', state="detached")
