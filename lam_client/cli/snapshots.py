"""`lam export BANK FILE` and `lam import NAME FILE`: portable snapshot files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app, emit, options, run
from .banks import bank_table


@app.command("export")
def export_cmd(ctx: typer.Context, bank: str, file: Path) -> None:
    """Write BANK as a portable snapshot FILE (complete, or not written at all)."""
    o = options(ctx)
    run(o.client().export_snapshot, bank, file)
    summary = {"bank": bank, "file": str(file), "bytes": file.stat().st_size}
    emit(o, summary, f"exported {bank} to {file} ({summary['bytes']} bytes)")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    replace: Annotated[bool, typer.Option(help="Replace an existing bank of that name.")] = False,
) -> None:
    """Restore snapshot FILE into a bank NAME."""
    o = options(ctx)
    bank = run(o.client().import_snapshot, name, file, replace=replace)
    emit(o, bank, bank_table([bank]))
