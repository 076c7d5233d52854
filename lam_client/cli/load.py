"""`lam load BANK FILE`: batched, resumable bulk store from .npy, .csv or .jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import _loaders
from .._upload import progress_bar
from ._app import EXIT_INPUT, app, emit, err, options, run, usage_error
from .text import count_texts, is_text_file, text_batches


def _state_path(file: Path) -> Path:
    return file.with_name(file.name + ".lam-load.json")


def _fingerprint(file: Path, bank: str, batch_size: int) -> dict[str, Any]:
    st = file.stat()
    return {"bank": bank, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "batch_size": batch_size}


def _batches_done(state_file: Path, fp: dict[str, Any]) -> int:
    """How many batches a previous load of the same file, bank and batch size stored."""
    if not state_file.exists():
        return 0
    saved = json.loads(state_file.read_text())
    if {k: saved.get(k) for k in fp} == fp:
        return int(saved.get("done", 0))
    err.print("[yellow]state file does not match this file/bank/batch size: starting over")
    return 0


@app.command()
def load(
    ctx: typer.Context,
    bank: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    batch_size: Annotated[int, typer.Option(min=1, help="Memories per request.")] = 1000,
    resume: Annotated[
        bool, typer.Option(help="Skip the batches a previous, interrupted load stored.")
    ] = False,
    if_novel: Annotated[
        float | None,
        typer.Option(
            "--if-novel",
            metavar="TAU",
            help="Store only memories whose energy E(ξ) is above TAU (novelty-gated store).",
        ),
    ] = None,
) -> None:
    """Store the vectors of FILE (.npy, .csv, .jsonl) into BANK in batches; or its texts
    (.txt: one per line; .jsonl rows with "text", "id", "payload") into a text bank, which
    embeds them.

    Progress is recorded after each stored batch in FILE.lam-load.json (removed when done);
    `--resume` continues after the last recorded batch if FILE and --batch-size are unchanged.
    Re-sending a batch is harmless anyway: store is an upsert (with --if-novel, a re-sent
    batch finds its memories already there and skips them).
    """
    o = options(ctx)
    state_file = _state_path(file)
    fp = _fingerprint(file, bank, batch_size)
    skip = _batches_done(state_file, fp) if resume else 0
    client = o.client()
    try:
        texts = is_text_file(file)
        total = count_texts(file) if texts else _loaders.count_rows(file)
        chunks: Any = (text_batches if texts else _loaders.read_batches)(file, batch_size)
    except (_loaders.InputError, OSError, UnicodeDecodeError) as exc:
        raise usage_error(f"invalid_input: {exc}", EXIT_INPUT) from None
    store = client.store_texts if texts else client.store
    stored = count = skipped = 0
    with progress_bar(not o.as_json, f"loading {file.name}") as bar:
        task = bar.add_task(f"loading {file.name}", total=total)
        try:
            for i, (xi, ids, payloads) in enumerate(chunks):
                if i >= skip:
                    result = run(store, bank, xi, ids, payloads, if_novel)
                    count, skipped = result.count, skipped + len(result.skipped)
                    stored += len(xi) - len(result.skipped)
                    state_file.write_text(json.dumps({**fp, "done": i + 1}))
                bar.advance(task, len(xi))
        except _loaders.InputError as exc:
            raise usage_error(f"invalid_input: {exc}", EXIT_INPUT) from None
    state_file.unlink(missing_ok=True)
    summary = {"bank": bank, "stored": stored, "skipped_batches": skip, "count": count}
    text = f"stored {stored} memories into {bank} (bank size {count})"
    if if_novel is not None:
        summary["skipped"] = skipped
        text += f"; {skipped} not novel (E ≤ {if_novel}) were skipped"
    emit(o, summary, text)
