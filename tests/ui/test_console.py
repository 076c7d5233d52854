"""The console in a real browser: banks, playground, dynamics, bank page, create/delete."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import httpx
import pytest

from tests.harness import LamServer

# Collected without Playwright too: then every test here skips (conftest's browser fixture).
expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


def values(page: Any, selector: str) -> list[float]:
    """The numbers a chart plots (charts.js puts them on the <svg> as data-values)."""
    return json.loads(page.get_attribute(selector, "data-values"))


def open_console(page: Any, server: LamServer) -> None:
    page.goto(server.url + "/ui")
    page.wait_for_selector("table.banks")


def test_banks_page_lists_the_digits_bank(page: Any, server: LamServer, shoot: Any) -> None:
    open_console(page, server)
    row = page.locator('tr[data-bank="digits"]')
    assert row.locator('td[data-label="Memories"]').inner_text() == "200"
    text = row.inner_text()
    for part in ("digits", "64", "B", "float32", "cpu", "none (exact)", "ready"):
        assert part in text, (part, text)
    assert page.inner_text("#ready") == "server ready"
    shoot(page, "ui-banks.png")


def test_playground_completes_a_masked_digit(page: Any, server: LamServer, shoot: Any) -> None:
    open_console(page, server)
    page.click('tr[data-bank="digits"] >> text=Query')
    page.wait_for_selector("#pixel-grid .px")
    assert page.url.endswith("#/play/digits")
    page.select_option("#cue-memory", "d0")
    page.click("#hide-bottom")  # rows 5..8 hidden
    page.click('#pixel-grid .px[data-i="27"]')  # and two pixels by hand, by clicking them
    page.click('#pixel-grid .px[data-i="28"]')
    assert page.get_attribute('#pixel-grid .px[data-i="27"]', "aria-pressed") == "true"
    assert page.inner_text("#hidden-count") == "34 of 64 features hidden"
    page.fill("#steps", "4")
    page.dispatch_event("#steps", "input")
    page.click("#run-query")
    page.wait_for_selector("#completed")
    page.wait_for_selector("#weights")

    memory = httpx.get(server.url + "/v1/banks/digits/memories/d0").json()["vector"]
    completed = values(page, "#completed")
    assert len(completed) == 64
    hidden = set(range(32, 64)) | {27, 28}
    # Known pixels stay clamped to the cue; the hidden half is filled in, not left at zero.
    assert all(abs(completed[i] - memory[i]) < 1e-6 for i in range(64) if i not in hidden)
    assert sum(completed[i] for i in hidden) > 5.0
    assert page.locator("#step-images figure[data-step]").count() >= 1
    weights = values(page, "#weights")
    assert weights == sorted(weights, reverse=True)
    assert weights[0] > 0.5 and sum(weights) <= 1 + 1e-4  # float32 weights
    assert page.inner_text("#top-match").endswith("· 0"), "a 0 should complete to a 0"
    energy = values(page, "#query-energy")
    assert all(b <= a + 1e-6 for a, b in pairwise(energy)), energy
    shoot(page, "ui-playground.png")


def test_scoring_view_says_which_steps_it_used(page: Any, server: LamServer) -> None:
    page.goto(server.url + "/ui/#/play/digits")
    page.wait_for_selector("#pixel-grid .px")
    page.click("#score-cue")
    note = page.wait_for_selector("#score-note").inner_text()
    assert "steps 0" in note or "steps 1" in note
    assert values(page, "#weights")[0] > 0


def test_dynamics_energy_never_increases(page: Any, server: LamServer, shoot: Any) -> None:
    open_console(page, server)
    page.click('tr[data-bank="digits"] >> text=Dynamics')
    page.wait_for_selector("#pixel-grid .px")
    page.select_option("#cue-memory", "d0")
    page.click("#hide-bottom")
    page.click("#run-dynamics")
    page.wait_for_selector("#dyn-energy")
    energy = values(page, "#dyn-energy")
    times = json.loads(page.get_attribute("#dyn-energy", "data-xs"))
    assert len(energy) == len(times) > 10
    assert energy[-1] < energy[0]
    for a, b in pairwise(energy):
        assert b <= a + 1e-7 * max(1.0, abs(a)), (a, b)
    assert "never increases" in page.inner_text("#dyn-summary")
    page.wait_for_selector("#hidden-over-time figure:nth-child(4)")
    assert page.inner_text("#hidden-over-time figure:nth-child(4)").splitlines()[0].endswith("· 0")
    shoot(page, "ui-dynamics.png")


def test_bank_page_memories_and_diagnostics(page: Any, server: LamServer, shoot: Any) -> None:
    page.goto(server.url + "/ui/#/bank/digits")
    page.wait_for_selector("#delta-histogram")
    counts = values(page, "#delta-histogram")
    assert sum(counts) == 200, "every Δᵢ is in the histogram"
    diag = httpx.get(server.url + "/v1/banks/digits/diagnostics").json()
    facts = page.inner_text("#diag-facts")
    assert f"{diag['meeting']} of 200" in facts
    assert page.locator("#failing tbody tr").count() == min(10, diag["failing_total"])
    # Memories: ids and payloads, then as images on request.
    assert page.locator("#memory-list li").count() == 48
    assert '{"label":0}' in page.inner_text('#memory-list li[data-id="d0"]')
    page.check("#as-images")
    page.wait_for_selector('#memory-list li[data-id="d0"] svg.pixels')
    page.click("#more-memories")
    # (locators, not wait_for_function: the page's CSP forbids the eval that one uses)
    expect(page.locator("#memory-list li")).to_have_count(96)
    # A higher β moves the threshold and changes the count meeting it.
    page.fill("#diag-beta", "2000")
    page.click("#diag-check")
    expect(page.locator("#diag-facts")).to_contain_text("2000")
    shoot(page, "ui-bank.png")


def test_create_and_delete_a_bank(page: Any, server: LamServer) -> None:
    open_console(page, server)
    page.fill("#new-name", "scratch")
    page.fill("#new-dim", "16")
    page.fill("#new-beta", "2")
    page.click("#create-bank")
    page.wait_for_selector('tr[data-bank="scratch"]')
    assert httpx.get(server.url + "/v1/banks/scratch").json()["dim"] == 16
    page.click('button[data-bank="scratch"]')
    dialog = page.locator("#confirm-dialog")
    assert dialog.is_visible() and "scratch" in dialog.inner_text()
    page.click("#confirm-dialog button[value=no]")  # cancel first: nothing happens
    assert httpx.get(server.url + "/v1/banks/scratch").status_code == 200
    page.click('button[data-bank="scratch"]')
    page.click("#confirm-yes")
    page.wait_for_selector('tr[data-bank="scratch"]', state="detached")
    assert httpx.get(server.url + "/v1/banks/scratch").status_code == 404
    assert "Deleted bank scratch" in page.inner_text("#banks-message")


def one_hot_bank(server: LamServer, name: str) -> None:
    """A 6-dimensional bank (no square: drawn as strips) of the one-hot memories m0 … m5."""
    r = httpx.post(server.url + "/v1/banks", json={"name": name, "dim": 6, "beta": 4.0})
    assert r.status_code == 201, r.text
    memories = [{"id": f"m{i}", "vector": [float(i == j) for j in range(6)]} for i in range(6)]
    r = httpx.post(server.url + f"/v1/banks/{name}/memories", json={"memories": memories})
    assert r.status_code == 200, r.text


# Delays the console's fetch of one stored memory (…/memories/m1), as a slow server would.
SLOW_MEMORY = """
const real = window.fetch.bind(window);
window.fetch = async (url, opts) => {
  if (String(url).endsWith("/memories/m1")) await new Promise((r) => setTimeout(r, 800));
  return real(url, opts);
};
"""


def test_a_query_waits_for_the_memory_just_chosen(page: Any, server: LamServer) -> None:
    """Run right after choosing another memory: the query must use that memory, not the
    previous one whose vector was still loaded (it did, under a loaded CI machine)."""
    one_hot_bank(server, "slow")
    try:
        page.add_init_script(SLOW_MEMORY)
        page.goto(server.url + "/ui/#/play/slow")
        page.wait_for_selector(".cue-preview svg")
        page.click("#hide-bottom")  # the known half is clamped: the completion is exact there
        page.select_option("#cue-memory", "m1")
        page.click("#run-query")  # at once: m1's vector is still on its way
        page.wait_for_selector("#completed", timeout=10_000)
        assert values(page, "#completed")[:3] == [0.0, 1.0, 0.0]
        assert page.inner_text("#top-match") == "m1"
    finally:
        httpx.delete(server.url + "/v1/banks/slow")


def test_a_bank_that_is_not_an_image(page: Any, server: LamServer) -> None:
    """dim 6 is no square: vectors are drawn as strips and the mask presets still work."""
    one_hot_bank(server, "plain")
    try:
        page.goto(server.url + "/ui/#/play/plain")
        page.wait_for_selector(".cue-preview svg")
        assert page.locator("#pixel-grid").count() == 0
        page.select_option("#cue-memory", "m1")
        page.click("#hide-bottom")  # "Hide second half" here
        assert page.inner_text("#hidden-count") == "3 of 6 features hidden"
        page.click("#run-query")
        page.wait_for_selector("#completed")
        assert values(page, "#completed")[:3] == [0.0, 1.0, 0.0]
        assert page.inner_text("#top-match") == "m1"
        page.goto(server.url + "/ui/#/bank/plain")
        page.wait_for_selector("#diag-facts")
        assert page.locator("#as-images").is_disabled()
    finally:
        httpx.delete(server.url + "/v1/banks/plain")


def test_keyboard_only(page: Any, server: LamServer) -> None:
    page.goto(server.url + "/ui/#/play/digits")
    page.wait_for_selector("#pixel-grid .px")
    # The first Tab lands on the skip link, which moves focus to the page's content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "view"
    page.focus('#pixel-grid .px[data-i="0"]')
    page.keyboard.press("Space")  # a real button: Space and Enter toggle it
    assert page.get_attribute('#pixel-grid .px[data-i="0"]', "aria-pressed") == "true"
    page.focus("#run-query")
    page.keyboard.press("Enter")
    page.wait_for_selector("#completed")


def test_phone_width(phone_page: Any, server: LamServer, shoot: Any) -> None:
    p = phone_page
    p.goto(server.url + "/ui/#/play/digits")
    p.wait_for_selector("#pixel-grid .px")
    p.click("#hide-bottom")
    p.click("#run-query")
    p.wait_for_selector("#query-energy")
    assert p.evaluate("document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    shoot(p, "ui-phone-playground.png", at="#result")
    p.goto(server.url + "/ui/#/banks")
    p.wait_for_selector("table.banks")
    assert p.evaluate("document.documentElement.scrollWidth") <= 390
    shoot(p, "ui-phone-banks.png")
