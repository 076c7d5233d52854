"""The one test harness: a real `python -m service` process (LamServer) and the fixtures and
schemathesis runs built on it. Every suite that needs a server imports it from here:

    from tests.harness import LamServer
"""

from __future__ import annotations

from .server import REPO, LamServer, free_port

__all__ = ["REPO", "LamServer", "free_port"]
