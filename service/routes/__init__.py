"""HTTP routes of API v1: thin handlers, body → engine call in a worker thread → JSON.

Each module's router carries the /v1 prefix itself, so a route's `path` is its full
template (the `route` label of the metrics).
"""

from __future__ import annotations

from fastapi import APIRouter

from . import banks, cluster, diagnostics, dynamics, energy, health, memories, query


def v1_routers() -> list[APIRouter]:
    return [m.router for m in (banks, memories, query, energy, dynamics, diagnostics, cluster)]


__all__ = ["health", "v1_routers"]
