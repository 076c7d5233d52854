"""The `lam` app itself: global options, the client they make, and the output conventions.

Human tables by default; `--json` prints exactly one JSON document on stdout (progress bars
and errors go to stderr). On an error the exit status is non-zero (see EXIT_CODES) and stderr
carries the service's code and message.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import orjson
import typer
from rich.console import Console
from typer.core import TyperGroup

from ..client import Client
from ..errors import ConnectionFailed, LamClientError
from ..models import Bank

out = Console()
err = Console(stderr=True)

# Exit status by error family, so scripts can branch without parsing stderr.
EXIT_CODES = {400: 6, 401: 5, 403: 5, 404: 3, 409: 4, 413: 6, 415: 6, 422: 6, 429: 7, 503: 7}
EXIT_CONNECTION = 7
EXIT_OTHER = 1
EXIT_INPUT = 6
EXIT_USAGE = 2


class GlobalOptionsAnywhere(TyperGroup):
    """Takes the app's own options after the subcommand too: `lam bank list --json` is
    `lam --json bank list` (a new user types the former first). Click only reads a group's
    options before its subcommand, so they are moved there before parsing."""

    # Typed loosely: typer may ship its own copy of click (typer._click) or use click's.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist(args, self.params))


def hoist(args: list[str], params: Sequence[Any]) -> list[str]:
    """`args` with the options among `params` (and their values) moved to the front."""
    flags: set[str] = set()
    valued: set[str] = set()
    for p in params:
        if p.param_type_name == "option":
            (flags if p.is_flag else valued).update([*p.opts, *p.secondary_opts])
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":  # everything after it is an argument
            rest.extend(args[i:])
            break
        if arg in flags or ("=" in arg and arg.split("=", 1)[0] in valued):
            front.append(arg)
        elif arg in valued and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


app = typer.Typer(
    cls=GlobalOptionsAnywhere,
    help="LAM: Large Associative Memory service client. The global options (--url, "
    "--api-key, --path, --json, --timeout) go before or after the command.",
    no_args_is_help=True,
)


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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


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
    opts = Options(url, api_key, path, as_json, timeout)
    ctx.obj = opts
    ctx.call_on_close(opts.close)


def options(ctx: typer.Context) -> Options:
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


def emit(opts: Options, obj: Any, human: Any) -> None:
    """`obj` as JSON with --json, else `human` (a rich renderable or a line of text)."""
    if opts.as_json:
        emit_json(obj)
    else:
        out.print(human)


def fail(exc: LamClientError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.status or ''} {exc.code}: {exc.message}".replace("  ", " "))
    if exc.details:
        err.print(f"details: {json.dumps(exc.details, default=str)[:500]}")
    if isinstance(exc, ConnectionFailed):
        return typer.Exit(EXIT_CONNECTION)
    return typer.Exit(EXIT_CODES.get(exc.status, EXIT_OTHER))


def usage_error(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[red]error[/red] {message}")
    return typer.Exit(code)


def run(fn: Any, *args: Any, **kw: Any) -> Any:
    """Call the SDK; its typed error becomes the message on stderr and the exit status."""
    try:
        return fn(*args, **kw)
    except LamClientError as exc:
        raise fail(exc) from None
