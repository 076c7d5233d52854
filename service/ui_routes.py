"""The web console: static files under /ui, with a strict Content-Security-Policy.

The files live in service/ui/ (shipped as package data). They hold no data and need no key:
the pages call the public /v1 API from the browser, which carries the key itself.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_DIR = Path(__file__).with_name("ui")

# Only our own origin: no inline script or style, no frames, no plugins, no foreign hosts.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The console is small and changes with the server: revalidate instead of caching stale JS.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """StaticFiles that adds the security headers to every file (and redirect) it serves."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_console(app: FastAPI) -> None:
    """Serve service/ui at /ui (GET /ui redirects to /ui/, which is index.html)."""
    app.mount("/ui", ConsoleFiles(directory=UI_DIR, html=True), name="ui")
