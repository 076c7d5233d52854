"""`lam count` and `lam delete --filter`, and the `--filter` option of query and energy:
a filter is the JSON of docs/API.md "Filters" (the server validates it)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ._app import app, emit, options, run, usage_error

FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter", help='JSON filter, e.g. \'{"must": [{"key": "t", "match": {"value": "a"}}]}\'.'
    ),
]


def parse_filter_opt(text: str | None) -> dict[str, Any] | None:
    """The --filter option as a JSON object (a usage error if it is not one)."""
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise usage_error(f"--filter must be JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise usage_error("--filter must be a JSON object")
    return obj


@app.command()
def count(ctx: typer.Context, bank: str, filter: FilterOpt = None) -> None:
    """How many memories the bank holds (that pass --filter, if given)."""
    o = options(ctx)
    n = run(o.client().count, bank, parse_filter_opt(filter))
    emit(o, {"count": n}, str(n))


@app.command()
def delete(ctx: typer.Context, bank: str, filter: FilterOpt = None) -> None:
    """Delete the memories that pass --filter (required: a bank is deleted by `lam bank delete`)."""
    o = options(ctx)
    flt = parse_filter_opt(filter)
    if flt is None:
        raise usage_error("lam delete needs --filter")
    n = run(o.client().delete_many, bank, filter=flt)
    emit(o, {"deleted": n}, f"deleted {n}")


@app.command()
def reinforce(
    ctx: typer.Context,
    bank: str,
    ids: Annotated[list[str], typer.Argument(help="Memory ids.")],
    strength: Annotated[float | None, typer.Option(help="New strength s > 0.")] = None,
) -> None:
    """Set t_μ = now (and the strength, if given) for ids; unknown ids are not counted."""
    o = options(ctx)
    n = run(o.client().reinforce, bank, ids, strength)
    emit(o, {"reinforced": n}, f"reinforced {n}")
