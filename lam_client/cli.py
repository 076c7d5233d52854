"""`lam`: the command line of LAM (typer + rich).

Human tables by default; `--json` prints exactly one JSON document on stdout (progress bars
and errors go to stderr). On an error the exit status is non-zero (see EXIT_CODES) and stderr
carries the service's code and message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.table import Table

from . import _loaders
from ._upload import progress_bar
from .client import Client
from .errors import ConnectionFailed, LamClientError
from .models import Bank

app = typer.Typer(help="LAM: Large Associative Memory service client.", no_args_is_help=True)
bank_app = typer.Typer(help="Create, list, show and delete banks.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")

out = Console()
err = Console(stderr=True)

# Exit status by error family, so scripts can branch without parsing stderr.
EXIT_CODES = {400: 6, 401: 5, 403: 5, 404: 3, 409: 4, 413: 6, 415: 6, 422: 6, 429: 7, 503: 7}
EXIT_CONNECTION = 7
EXIT_OTHER = 1


@dataclasses.dataclass
class Options:
    url: str | None
    api_key: str | None
    path: str | None
    as_json: bool
    timeout: float
    _client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            if self.path:
                self._client = Client(path=self.path)
            else:
                self._client = Client(self.url, api_key=self.api_key, timeout=self.timeout)
        return self._client


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="LAM_URL", help="Server URL.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="LAM_API_KEY", help="API key (Bearer).", show_default=False)
    ] = None,
    path: Annotated[
        str | None, typer.Option(envvar="LAM_PATH", help="Embedded mode: data directory.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON on stdout.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Request timeout, seconds.")] = 30.0,
) -> None:
    ctx.obj = Options(url, api_key, path, as_json, timeout)
    ctx.call_on_close(lambda: ctx.obj._client.close() if ctx.obj._client else None)


def _opts(ctx: typer.Context) -> Options:
    opts: Options = ctx.obj
    return opts


def jsonable(obj: Any) -> Any:
    if isinstance(obj, Bank):
        return obj.raw or jsonable({k: v for k, v in dataclasses.asdict(obj).items() if k != "raw"})
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    return obj


def emit_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(jsonable(obj), option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    sys.stdout.flush()


def fail(exc: LamClientError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.status or ''} {exc.code}: {exc.message}".replace("  ", " "))
    if exc.details:
        err.print(f"details: {json.dumps(exc.details, default=str)[:500]}")
    if isinstance(exc, ConnectionFailed):
        return typer.Exit(EXIT_CONNECTION)
    return typer.Exit(EXIT_CODES.get(exc.status, EXIT_OTHER))


def _run(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except LamClientError as exc:
        raise fail(exc) from None


# ---- serve --------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="LAM_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LAM_PORT")] = 8000,
    data_dir: Annotated[str, typer.Option(envvar="LAM_DATA_DIR")] = "./data",
) -> None:
    """Run the HTTP service (same as `python -m service`); other LAM_* settings from the env."""
    os.environ.update(LAM_HOST=host, LAM_PORT=str(port), LAM_DATA_DIR=data_dir)
    from service.__main__ import main as serve_main

    serve_main()


# ---- banks ---------------------------------------------------------------------------------
def _bank_table(banks: list[Bank]) -> Table:
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
    dim: Annotated[int, typer.Option(help="Vector dimension.")],
    model: Annotated[str, typer.Option(help="A, B or C.")] = "B",
    beta: Annotated[float, typer.Option(help="Inverse temperature β > 0.")] = 1.0,
    normalize: Annotated[bool, typer.Option(help="L2-normalize memories and queries.")] = False,
    dtype: str = "float32",
    device: str = "auto",
    prefilter: Annotated[str, typer.Option(help="none, flat, ivf or hnsw.")] = "none",
    model_params: Annotated[
        str | None, typer.Option(help="JSON object, e.g. '{\"power\": 3}'.")
    ] = None,
) -> None:
    """Create a bank (idempotent for the same config)."""
    o = _opts(ctx)
    params = json.loads(model_params) if model_params else {}
    bank = _run(
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
    )
    emit_json(bank) if o.as_json else out.print(_bank_table([bank]))


@bank_app.command("list")
def bank_list(ctx: typer.Context) -> None:
    """List banks."""
    o = _opts(ctx)
    banks = _run(o.client().list_banks)
    emit_json({"banks": banks}) if o.as_json else out.print(_bank_table(banks))


@bank_app.command("show")
def bank_show(ctx: typer.Context, name: str) -> None:
    """Describe one bank."""
    o = _opts(ctx)
    bank = _run(o.client().get_bank, name)
    if o.as_json:
        emit_json(bank)
        return
    table = Table("field", "value", show_header=False)
    for k, v in bank.raw.items():
        table.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    out.print(table)


@bank_app.command("delete")
def bank_delete(ctx: typer.Context, name: str) -> None:
    """Delete a bank and all its memories."""
    o = _opts(ctx)
    _run(o.client().delete_bank, name)
    emit_json({"deleted": name}) if o.as_json else out.print(f"deleted bank {name}")


# ---- load ----------------------------------------------------------------------------------
def _state_path(file: Path) -> Path:
    return file.with_name(file.name + ".lam-load.json")


def _fingerprint(file: Path, bank: str, batch_size: int) -> dict[str, Any]:
    st = file.stat()
    return {"bank": bank, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "batch_size": batch_size}


@app.command()
def load(
    ctx: typer.Context,
    bank: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    batch_size: Annotated[int, typer.Option(min=1, help="Memories per request.")] = 1000,
    resume: Annotated[
        bool, typer.Option(help="Skip the batches a previous, interrupted load stored.")
    ] = False,
) -> None:
    """Store the vectors of FILE (.npy, .csv, .jsonl) into BANK in batches.

    Progress is recorded after each stored batch in FILE.lam-load.json (removed when done);
    `--resume` continues after the last recorded batch if FILE and --batch-size are unchanged.
    Re-sending a batch is harmless anyway: store is an upsert.
    """
    o = _opts(ctx)
    state_file = _state_path(file)
    fp = _fingerprint(file, bank, batch_size)
    skip = 0
    if resume and state_file.exists():
        saved = json.loads(state_file.read_text())
        if {k: saved.get(k) for k in fp} == fp:
            skip = int(saved.get("done", 0))
        else:
            err.print("[yellow]state file does not match this file/bank/batch size: starting over")
    try:
        total = _loaders.count_rows(file)
        chunks = _loaders.read_batches(file, batch_size)
    except (_loaders.InputError, OSError) as exc:
        err.print(f"[red]error[/red] invalid_input: {exc}")
        raise typer.Exit(6) from None
    client = o.client()
    stored = count = 0
    with progress_bar(not o.as_json, f"loading {file.name}") as bar:
        task = bar.add_task(f"loading {file.name}", total=total)
        try:
            for i, (xi, ids, payloads) in enumerate(chunks):
                if i < skip:
                    bar.advance(task, xi.shape[0])
                    continue
                result = _run(client.store, bank, xi, ids, payloads)
                stored += xi.shape[0]
                count = result.count
                state_file.write_text(json.dumps({**fp, "done": i + 1}))
                bar.advance(task, xi.shape[0])
        except _loaders.InputError as exc:
            err.print(f"[red]error[/red] invalid_input: {exc}")
            raise typer.Exit(6) from None
    state_file.unlink(missing_ok=True)
    summary = {"bank": bank, "stored": stored, "skipped_batches": skip, "count": count}
    if o.as_json:
        emit_json(summary)
    else:
        out.print(f"stored {stored} memories into {bank} (bank size {count})")


# ---- query, energy, diagnostics ------------------------------------------------------------
def _vectors(vector: str | None, file: Path | None) -> np.ndarray:
    if (vector is None) == (file is None):
        err.print("[red]error[/red] give exactly one of --vector and --file")
        raise typer.Exit(2)
    if vector is not None:
        try:
            return np.asarray(json.loads(vector), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            err.print(f"[red]error[/red] --vector must be a JSON array of numbers: {exc}")
            raise typer.Exit(2) from None
    assert file is not None
    return np.load(file, allow_pickle=False)


VectorOpt = Annotated[
    str | None, typer.Option("--vector", "-v", help="JSON array (or array of arrays).")
]
FileOpt = Annotated[
    Path | None, typer.Option("--file", "-f", exists=True, help=".npy file (B, d).")
]


@app.command()
def query(
    ctx: typer.Context,
    bank: str,
    vector: VectorOpt = None,
    file: FileOpt = None,
    mask: Annotated[str | None, typer.Option(help="JSON booleans, true = known feature.")] = None,
    beta: Annotated[float | None, typer.Option(help="β (default: the bank's).")] = None,
    steps: int = 1,
    top_k: int = 5,
    exact: bool = False,
    with_vectors: bool = False,
) -> None:
    """Retrieve: the completed state and the top matches of each cue."""
    o = _opts(ctx)
    cues = _vectors(vector, file)
    m = None if mask is None else json.loads(mask)
    res = _run(
        o.client().query,
        bank,
        cues,
        mask=m,
        beta=beta,
        steps=steps,
        top_k=top_k,
        exact=exact,
        with_vectors=with_vectors,
    )
    if o.as_json:
        emit_json(res)
        return
    for i, r in enumerate(res):
        table = Table(
            "rank",
            "id",
            "weight",
            "score",
            "payload",
            title=f"query {i}: energy {r.energy:.6g}, steps {r.steps}, converged {r.converged}",
        )
        for rank, mt in enumerate(r.matches, start=1):
            payload = "" if mt.payload is None else json.dumps(mt.payload)[:60]
            table.add_row(str(rank), mt.id, f"{mt.weight:.4f}", f"{mt.score:.4f}", payload)
        out.print(table)


@app.command()
def energy(
    ctx: typer.Context,
    bank: str,
    vector: VectorOpt = None,
    file: FileOpt = None,
    beta: float | None = None,
    constants: Annotated[bool, typer.Option(help="Add β⁻¹ log N + ½M² (E ≥ 0).")] = False,
) -> None:
    """Energy E(v) of states under the bank's model."""
    o = _opts(ctx)
    res = _run(o.client().energy, bank, _vectors(vector, file), beta=beta, constants=constants)
    if o.as_json:
        emit_json(res)
        return
    table = Table("state", "energy")
    for i, e in enumerate(res.energies):
        table.add_row(str(i), f"{e:.8g}")
    out.print(table)


@app.command()
def diagnostics(
    ctx: typer.Context,
    bank: str,
    beta: float | None = None,
    limit: int = 20,
) -> None:
    """Is every memory retrievable at β? (separation Δ_i vs the fixed-point condition)."""
    o = _opts(ctx)
    d = _run(o.client().diagnostics, bank, beta=beta, limit=limit)
    if o.as_json:
        emit_json(d)
        return
    table = Table("field", "value", show_header=False, title=f"diagnostics of {bank}")
    for k in ("beta", "count", "M", "threshold", "meeting", "separable", "beta_min", "method"):
        table.add_row(k, str(getattr(d, k)))
    table.add_row(
        "failing", f"{d.failing_total} " + " ".join(str(f.get("id")) for f in d.failing[:10])
    )
    out.print(table)


# ---- snapshots -----------------------------------------------------------------------------
@app.command("export")
def export_cmd(ctx: typer.Context, bank: str, file: Path) -> None:
    """Write BANK as a portable snapshot FILE."""
    o = _opts(ctx)
    _run(o.client().export_snapshot, bank, file)
    summary = {"bank": bank, "file": str(file), "bytes": file.stat().st_size}
    emit_json(summary) if o.as_json else out.print(
        f"exported {bank} to {file} ({summary['bytes']} bytes)"
    )


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    name: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    replace: Annotated[bool, typer.Option(help="Replace an existing bank of that name.")] = False,
) -> None:
    """Restore snapshot FILE into a bank NAME."""
    o = _opts(ctx)
    bank = _run(o.client().import_snapshot, name, file, replace=replace)
    emit_json(bank) if o.as_json else out.print(_bank_table([bank]))


if __name__ == "__main__":
    app()
