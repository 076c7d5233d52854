"""Text banks on the command line: the text files `lam load` reads, and `lam mcp`.

A text file is `.txt` (one memory per non-blank line, the line its text) or `.jsonl` whose
rows carry "text" (with optional "id" and "payload"); the server embeds the texts (the
bank's `embedder`), so the file holds no vectors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from .._loaders import Record, batched, jsonl_records
from ._app import app

TextBatch = tuple[list[str], list[str | None] | None, list[dict[str, Any] | None] | None]


def is_text_file(path: Path) -> bool:
    """`.txt`, or a `.jsonl`/`.ndjson` whose first row has "text" and no "vector"."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return True
    if suffix not in (".jsonl", ".ndjson"):
        return False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    return False
                return isinstance(rec, dict) and "text" in rec and "vector" not in rec
    return False


def count_texts(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def text_batches(path: Path, batch_size: int) -> Iterator[TextBatch]:
    """Batches of (texts, ids, payloads) of a text file (ids and payloads: JSONL only)."""
    records = _txt_records(path) if path.suffix.lower() == ".txt" else jsonl_records(path, "text")
    for texts, ids, payloads in batched(records, batch_size):
        yield _batch(texts, ids, payloads)


def _txt_records(path: Path) -> Iterator[Record]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\r\n"), None, None


def _batch(
    texts: list[str], ids: list[str | None], payloads: list[dict[str, Any] | None]
) -> TextBatch:
    return (
        texts,
        ids if any(i is not None for i in ids) else None,
        payloads if any(p is not None for p in payloads) else None,
    )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def mcp(ctx: typer.Context) -> None:
    """Serve a bank to agents over the Model Context Protocol (`lam mcp --help`): the tools
    remember, recall, is_familiar, forget (needs the mcp extra)."""
    try:
        from ..integrations.mcp import main
    except ImportError as exc:  # the mcp package is an optional extra
        raise typer.Exit(_missing(exc)) from None
    main(list(ctx.args))


def _missing(exc: ImportError) -> int:
    from ._app import err

    err.print(f"[red]error[/red] lam mcp needs the mcp extra (pip install 'lam[mcp]'): {exc}")
    return 6
