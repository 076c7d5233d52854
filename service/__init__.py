"""LAM's HTTP service: API v1 (API.md) over lam_engine.Engine."""

from .main import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
