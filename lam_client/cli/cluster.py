"""`lam cluster up|add-node|down`: a real Ray cluster on this machine (lam_client.cluster_local)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import EXIT_OTHER, app, emit, err, options

cluster_app = typer.Typer(help="A local Ray cluster for sharded banks (needs the 'cluster' extra).")
app.add_typer(cluster_app, name="cluster")

DataDir = Annotated[Path, typer.Option("--data-dir", help="the cluster's directory D")]


def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    from .. import cluster_local

    try:
        return fn(*args, **kw)
    except cluster_local.ClusterError as exc:
        err.print(f"[red]cluster:[/red] {exc}")
        raise typer.Exit(EXIT_OTHER) from exc


def _human(doc: dict[str, Any]) -> str:
    lines = [f"address {doc['address']}"]
    for n in doc["nodes"]:
        role = "head" if n["head"] else "worker"
        lines.append(f"  {n['name']:<8} {role:<6} raylet {n['raylet_pid']}  {n['node_id']}")
    return "\n".join(lines)


@cluster_app.command("up")
def up(
    ctx: typer.Context,
    data_dir: DataDir,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=250)] = 3,
    cpus: Annotated[int, typer.Option("--cpus", min=1, help="CPUs per node")] = 1,
) -> None:
    """Start a head and N − 1 worker nodes on 127.0.0.2, .3, …; writes D/cluster.json."""
    from .. import cluster_local

    doc = _call(cluster_local.up, data_dir, nodes, num_cpus=cpus)
    emit(options(ctx), doc, _human(doc))


@cluster_app.command("add-node")
def add_node(
    ctx: typer.Context,
    data_dir: DataDir,
    name: Annotated[str | None, typer.Option("--name", help="bring back this node")] = None,
    cpus: Annotated[int, typer.Option("--cpus", min=1, help="CPUs of the node")] = 1,
) -> None:
    """Add a worker node, or bring back a lost one (its data directory kept) by --name."""
    from .. import cluster_local

    doc = _call(cluster_local.add_node, data_dir, name, num_cpus=cpus)
    emit(options(ctx), doc, _human(doc))


@cluster_app.command("down")
def down(ctx: typer.Context, data_dir: DataDir) -> None:
    """Stop every node of the cluster (its processes only; data directories are kept)."""
    from .. import cluster_local

    ended = _call(cluster_local.down, data_dir)
    emit(options(ctx), {"stopped": ended}, f"stopped {ended} processes")
