"""`lam serve`: the HTTP service in this process."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ._app import app


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="LAM_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LAM_PORT")] = 8000,
    data_dir: Annotated[str, typer.Option(envvar="LAM_DATA_DIR")] = "./data",
) -> None:
    """Run the HTTP service (same as `python -m service`); other LAM_* settings from the env."""
    os.environ.update(LAM_HOST=host, LAM_PORT=str(port), LAM_DATA_DIR=data_dir)
    # Imported on use: the service (FastAPI, uvicorn) is no dependency of the other commands.
    from service.__main__ import main as serve_main

    serve_main()
