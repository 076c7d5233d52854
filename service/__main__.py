"""`python -m service` / `lam-server`: run the API with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from .main import create_app
from .settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # ONE process: the store is embedded (SQLite file + banks held in memory/on a device),
        # so a second worker would load a second, diverging copy of every bank.
        workers=1,
        log_level=settings.log_level,
        # On SIGTERM uvicorn stops accepting, drains in-flight requests for up to this long,
        # then runs the lifespan shutdown, which finishes queued batches and closes the store.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        access_log=settings.log_level in ("debug", "trace"),
    )


if __name__ == "__main__":
    main()
