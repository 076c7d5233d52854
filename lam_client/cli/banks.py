"""`lam bank create|list|show|delete`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ..models import Bank
from ._app import app, emit, options, run, usage_error

bank_app = typer.Typer(help="Create, list, show and delete banks.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")


def bank_table(banks: list[Bank]) -> Table:
    table = Table("name", "dim", "model", "beta", "normalize", "dtype", "count", "device", "index")
    for b in banks:
        table.add_row(
            b.name,
            str(b.dim),
            b.model,
            f"{b.beta:g}",
            str(b.normalize),
            b.dtype,
            str(b.count),
            b.device,
            str(b.index.get("kind", "none")),
        )
    return table


@bank_app.command("create")
def bank_create(
    ctx: typer.Context,
    name: str,
    dim: Annotated[
        int | None, typer.Option(help="Vector dimension (a text bank: the model's).")
    ] = None,
    model: Annotated[str, typer.Option(help="A, B or C.")] = "B",
    beta: Annotated[float, typer.Option(help="Inverse temperature β > 0.")] = 1.0,
    normalize: Annotated[
        bool | None,
        typer.Option(help="L2-normalize memories and queries (default: only text banks)."),
    ] = None,
    dtype: str = "float32",
    device: str = "auto",
    prefilter: Annotated[str, typer.Option(help="none, flat, ivf or hnsw.")] = "none",
    model_params: Annotated[
        str | None, typer.Option(help="JSON object, e.g. '{\"power\": 3}'.")
    ] = None,
    embedder: Annotated[
        str | None, typer.Option(help="A text bank's model, e.g. all-MiniLM-L6-v2.")
    ] = None,
    default_ttl_s: Annotated[
        float | None, typer.Option(help="Lifetime (s) of memories stored without one.")
    ] = None,
    half_life_s: Annotated[float | None, typer.Option(help="Strengths fade with it (s).")] = None,
) -> None:
    """Create a bank (idempotent for the same config)."""
    o = options(ctx)
    params = json.loads(model_params) if model_params else {}
    forgetting = {"default_ttl_s": default_ttl_s, "half_life_s": half_life_s}
    bank = run(
        o.client().create_bank,
        name,
        dim,
        model=model,
        beta=beta,
        normalize=normalize,
        dtype=dtype,
        device=device,
        prefilter={"kind": prefilter},
        model_params=params,
        **({} if embedder is None else {"embedder": {"model": embedder}}),
        **{k: v for k, v in forgetting.items() if v is not None},
    )
    emit(o, bank, bank_table([bank]))


@bank_app.command("update")
def bank_update(
    ctx: typer.Context,
    name: str,
    beta: Annotated[float | None, typer.Option(help="Inverse temperature β > 0.")] = None,
    default_ttl_s: Annotated[
        str | None, typer.Option(help="Seconds, or 'none' to clear (docs/forgetting.md).")
    ] = None,
    half_life_s: Annotated[str | None, typer.Option(help="Seconds, or 'none' to clear.")] = None,
) -> None:
    """Change a bank's β, default lifetime or half-life (options left out are kept)."""
    o = options(ctx)
    changes: dict[str, float | None] = {}
    for key, text in (("default_ttl_s", default_ttl_s), ("half_life_s", half_life_s)):
        if text is not None:
            try:
                changes[key] = None if text.lower() in ("none", "null") else float(text)
            except ValueError:
                raise usage_error(f"--{key.replace('_', '-')} takes seconds or 'none'") from None
    bank = run(o.client().update_bank, name, beta=beta, **changes)
    emit(o, bank, bank_table([bank]))


@bank_app.command("list")
def bank_list(ctx: typer.Context) -> None:
    """List banks."""
    o = options(ctx)
    banks = run(o.client().list_banks)
    emit(o, {"banks": banks}, bank_table(banks))


@bank_app.command("show")
def bank_show(ctx: typer.Context, name: str) -> None:
    """Describe one bank."""
    o = options(ctx)
    bank = run(o.client().get_bank, name)
    table = Table("field", "value", show_header=False)
    for k, v in bank.raw.items():
        table.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    emit(o, bank, table)


@bank_app.command("delete")
def bank_delete(ctx: typer.Context, name: str) -> None:
    """Delete a bank and all its memories."""
    o = options(ctx)
    run(o.client().delete_bank, name)
    emit(o, {"deleted": name}, f"deleted bank {name}")
