"""/ui over plain HTTP: open, strict CSP on every file, no inline script, nothing foreign."""

from __future__ import annotations

import re

import httpx
import pytest

from service.ui_routes import UI_DIR
from tests.harness import LamServer

FILES = sorted(p.relative_to(UI_DIR).as_posix() for p in UI_DIR.rglob("*") if p.is_file())


def test_ui_redirects_and_serves_the_console(server: LamServer) -> None:
    r = httpx.get(server.url + "/ui", follow_redirects=True)
    assert r.status_code == 200 and str(r.url).endswith("/ui/")
    assert "<title>LAM console</title>" in r.text


@pytest.mark.parametrize("name", FILES)
def test_every_file_carries_the_security_headers(server: LamServer, name: str) -> None:
    r = httpx.get(f"{server.url}/ui/{name}")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    if name.endswith(".js"):
        assert "javascript" in r.headers["content-type"]


def test_ui_needs_no_key_but_the_api_does(auth_server: LamServer) -> None:
    assert httpx.get(auth_server.url + "/ui/", follow_redirects=True).status_code == 200
    assert httpx.get(auth_server.url + "/ui/js/app.js").status_code == 200
    assert httpx.get(auth_server.url + "/v1/banks").status_code == 401


def test_no_inline_script_no_handlers_no_foreign_urls() -> None:
    html = (UI_DIR / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, f"inline script: {tag}"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler in index.html"
    assert "style=" not in html
    for path in UI_DIR.rglob("*"):
        if path.suffix in (".js", ".css", ".html"):
            text = path.read_text()
            # No http(s) URL but the SVG namespace: no CDN, no web font, no analytics.
            urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
            assert not urls, (path.name, urls)
            assert "innerHTML" not in text, f"{path.name}: build DOM nodes, not HTML strings"
