"""`lam`: the command line of LAM (typer + rich), over HTTP (`--url`) or embedded (`--path`).

One module per concern: `_app` (global options, output, exit codes), `banks`, `load`,
`retrieval` (query, energy, diagnostics), `selection` (count, delete by filter),
`snapshots`, `serve`, `cluster` (a local Ray cluster). Importing them registers
their commands on `app`, in the order of `lam --help`.
"""

from . import banks, cluster, load, retrieval, selection, serve, snapshots
from ._app import app

__all__ = ["app", "banks", "cluster", "load", "retrieval", "selection", "serve", "snapshots"]
