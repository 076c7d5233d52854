"""Browser tests of the console: Debian's chromium driven by Playwright against a live server.

One server with a digits bank (sklearn's 8×8 digits, 200 memories) for the whole module,
one more with API keys for the auth tests. Every page gets guards: no console errors, no
uncaught exceptions, no failed requests and no request to any host but 127.0.0.1.
Skipped, with the reason, only when chromium or Playwright is missing (CI installs both:
scripts/install-test-tools.sh and the `dev` extra).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness import REPO, LamServer

CHROMIUM = os.environ.get("LAM_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium phones Google at start (refused here).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHOTS = REPO / "docs" / "images"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
DIGITS_N = 200


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; CI: the dev extra)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium; CI: test-tools)"
    return None


def digits_memories() -> list[dict[str, Any]]:
    """The first 200 of sklearn's 8×8 digits, scaled to [0, 1], id d<i>, payload {label}."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data[:DIGITS_N] / 16.0
    return [
        {"id": f"d{i}", "vector": x[i].tolist(), "payload": {"label": int(d.target[i])}}
        for i in range(DIGITS_N)
    ]


def seed_digits(url: str, headers: dict[str, str] | None = None) -> None:
    h = headers or {}
    r = httpx.post(f"{url}/v1/banks", json={"name": "digits", "dim": 64, "beta": 8.0}, headers=h)
    assert r.status_code in (200, 201), r.text
    r = httpx.post(
        f"{url}/v1/banks/digits/memories", json={"memories": digits_memories()}, headers=h,
        timeout=30,
    )  # fmt: skip
    assert r.status_code == 200, r.text


def _serve(tmp: Path, env: dict[str, str]) -> LamServer:
    tmp.mkdir(parents=True, exist_ok=True)
    server = LamServer(data_dir=tmp / "data", log_path=tmp / "server.log", env=env)
    server.start()
    return server


@pytest.fixture(scope="package")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LamServer]]:
    """Both servers, started side by side (a start is mostly imports: ~4 s alone, more on a
    loaded machine), each seeded with the digits bank."""
    specs = {
        "open": {"LAM_TORCH_THREADS": "1"},
        "keys": {"LAM_API_KEYS": "rk:read,wk:write", "LAM_TORCH_THREADS": "1"},
    }
    dirs = {name: tmp_path_factory.mktemp(f"ui-{name}") for name in specs}
    with ThreadPoolExecutor(len(specs)) as pool:
        futures = {name: pool.submit(_serve, dirs[name], env) for name, env in specs.items()}
    servers = {name: f.result() for name, f in futures.items() if f.exception() is None}
    try:
        for f in futures.values():
            f.result()  # a server that did not start: raise, after stopping the other one
        seed_digits(servers["open"].url)
        seed_digits(servers["keys"].url, {"Authorization": "Bearer wk"})
        yield servers
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture(scope="package")
def server(_servers: dict[str, LamServer]) -> LamServer:
    """No API keys."""
    return _servers["open"]


@pytest.fixture(scope="package")
def auth_server(_servers: dict[str, LamServer]) -> LamServer:
    """LAM_API_KEYS="rk:read,wk:write"."""
    return _servers["keys"]


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # A fresh profile per run: launch() makes a temporary user-data-dir and removes it.
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Guard:
    """What a page did that it should not: filled by the listeners, checked at teardown."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    # Console lines a test expects, e.g. chromium's "status of 401" for a refused call.
    allowed: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        errors = [e for e in self.console_errors if not any(a in e for a in self.allowed)]
        return errors + self.page_errors + self.failed + self.foreign


def _watch(page: Any, guard: Guard) -> None:
    def on_request(req: Any) -> None:
        parts = urlsplit(req.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.hostname != "127.0.0.1":
            guard.foreign.append(f"request left 127.0.0.1: {req.url}")

    page.on("request", on_request)
    page.on("console", lambda m: m.type == "error" and guard.console_errors.append(m.text))
    page.on("pageerror", lambda e: guard.page_errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: guard.failed.append(f"failed: {r.url} {r.failure}"))


@pytest.fixture
def guard() -> Guard:
    return Guard()


def _guarded_page(browser: Any, guard: Guard, viewport: dict[str, int]) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(20_000)
    p = context.new_page()
    _watch(p, guard)
    try:
        yield p
    finally:
        context.close()
    assert not guard.problems(), guard.problems()


@pytest.fixture
def page(browser: Any, guard: Guard) -> Iterator[Any]:
    """A 1280×800 page in a fresh context (its own sessionStorage), guarded."""
    yield from _guarded_page(browser, guard, DESKTOP)


@pytest.fixture
def phone_page(browser: Any, guard: Guard) -> Iterator[Any]:
    """The same at phone width (390×844)."""
    yield from _guarded_page(browser, guard, PHONE)


@pytest.fixture(scope="package")
def shoot() -> Any:
    """Screenshots for README.md and docs/console.md, retaken on every run so they stay current."""

    def take(page: Any, name: str, at: str | None = None) -> Path:
        """The viewport, scrolled to the top (clicks scroll the page) or to `at`."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / name
        if at is None:
            page.evaluate("window.scrollTo(0, 0)")
        else:
            page.locator(at).evaluate("el => el.scrollIntoView()")
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.screenshot(path=str(path), animations="disabled")
        return path

    return take
