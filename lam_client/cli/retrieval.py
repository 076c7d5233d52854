"""`lam query`, `lam energy`, `lam diagnostics`. Query defaults come from lam_engine.config
(QUERY), the source the service's schemas and the SDK read too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Group
from rich.table import Table

from lam_engine.config import QUERY

from ..models import QueryResponse
from ._app import app, emit, options, run, usage_error
from .selection import FilterOpt, parse_filter_opt

VectorOpt = Annotated[
    str | None, typer.Option("--vector", "-v", help="JSON array (or array of arrays).")
]
FileOpt = Annotated[
    Path | None, typer.Option("--file", "-f", exists=True, help=".npy file (B, d).")
]


def _vectors(vector: str | None, file: Path | None) -> np.ndarray:
    if (vector is None) == (file is None):
        raise usage_error("give exactly one of --vector and --file")
    if vector is not None:
        try:
            return np.asarray(json.loads(vector), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise usage_error(f"--vector must be a JSON array of numbers: {exc}") from None
    assert file is not None
    return np.load(file, allow_pickle=False)


def _match_tables(res: QueryResponse) -> Group:
    tables: list[Any] = []
    for i, r in enumerate(res):
        title = f"query {i}: energy {r.energy:.6g}, steps {r.steps}, converged {r.converged}"
        table = Table("rank", "id", "weight", "score", "payload", title=title)
        for rank, mt in enumerate(r.matches, start=1):
            payload = "" if mt.payload is None else json.dumps(mt.payload)[:60]
            table.add_row(str(rank), mt.id, f"{mt.weight:.4f}", f"{mt.score:.4f}", payload)
        tables.append(table)
    return Group(*tables)


@app.command()
def query(
    ctx: typer.Context,
    bank: str,
    vector: VectorOpt = None,
    file: FileOpt = None,
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="A text cue (text banks; repeatable).")
    ] = None,
    mask: Annotated[str | None, typer.Option(help="JSON booleans, true = known feature.")] = None,
    beta: Annotated[float | None, typer.Option(help="β (default: the bank's).")] = None,
    steps: Annotated[int, typer.Option(help="Update steps (0: score at the cue).")] = QUERY.steps,
    tol: Annotated[float, typer.Option(help="Stop once a step moves less.")] = QUERY.tol,
    top_k: Annotated[int, typer.Option(help="Matches per query.")] = QUERY.top_k,
    exact: Annotated[bool, typer.Option(help="Skip the prefilter.")] = QUERY.exact,
    with_payload: bool = QUERY.with_payload,
    with_vectors: bool = QUERY.with_vectors,
    filter: FilterOpt = None,
) -> None:
    """Retrieve: the completed state and the top matches of each cue."""
    o = options(ctx)
    if text and (vector is not None or file is not None or mask is not None):
        raise usage_error("--text takes no --vector, --file or --mask")
    cues: Any = list(text) if text else _vectors(vector, file)
    kw: dict[str, Any] = {} if text else {"mask": None if mask is None else json.loads(mask)}
    res = run(
        o.client().query_texts if text else o.client().query,
        bank,
        cues,
        **kw,
        beta=beta,
        steps=steps,
        tol=tol,
        top_k=top_k,
        exact=exact,
        with_payload=with_payload,
        with_vectors=with_vectors,
        filter=parse_filter_opt(filter),
    )
    emit(o, res, None if o.as_json else _match_tables(res))


@app.command()
def energy(
    ctx: typer.Context,
    bank: str,
    vector: VectorOpt = None,
    file: FileOpt = None,
    beta: float | None = None,
    constants: Annotated[bool, typer.Option(help="Add β⁻¹ log N + ½M² (E ≥ 0).")] = False,
    filter: FilterOpt = None,
) -> None:
    """Energy E(v) of states under the bank's model (over the memories passing --filter)."""
    o = options(ctx)
    flt = parse_filter_opt(filter)
    res = run(
        o.client().energy, bank, _vectors(vector, file), beta=beta, constants=constants, filter=flt
    )
    table = Table("state", "energy")
    for i, e in enumerate(res.energies):
        table.add_row(str(i), f"{e:.8g}")
    emit(o, res, table)


@app.command()
def diagnostics(
    ctx: typer.Context,
    bank: str,
    beta: float | None = None,
    limit: int = 20,
) -> None:
    """Is every memory retrievable at β? (separation Δ_i vs the fixed-point condition)."""
    o = options(ctx)
    d = run(o.client().diagnostics, bank, beta=beta, limit=limit)
    table = Table("field", "value", show_header=False, title=f"diagnostics of {bank}")
    for k in ("beta", "count", "M", "threshold", "meeting", "separable", "beta_min", "method"):
        table.add_row(k, str(getattr(d, k)))
    table.add_row(
        "failing", f"{d.failing_total} " + " ".join(str(f.get("id")) for f in d.failing[:10])
    )
    emit(o, d, table)
