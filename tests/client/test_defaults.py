"""Query and dynamics defaults have one source, lam_engine.config: the SDK signatures (sync
and generated async) and the CLI options read it, so changing a default there changes them."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from lam_client import AsyncClient, Client
from lam_client.cli import app
from lam_engine.config import DYNAMICS, QUERY

ROOT = Path(__file__).resolve().parents[2]
QUERY_FIELDS = ("steps", "tol", "top_k", "with_payload", "with_vectors", "exact")
DYNAMICS_FIELDS = ("tau_f", "tau_h", "dt", "t_max", "record_every", "tol", "top_k")


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_sdk_signatures_read_config(cls: type) -> None:
    query = inspect.signature(cls.query).parameters  # type: ignore[attr-defined]
    for name in QUERY_FIELDS:
        assert query[name].default == getattr(QUERY, name), name
    dynamics = inspect.signature(cls.dynamics).parameters  # type: ignore[attr-defined]
    for name in DYNAMICS_FIELDS:
        assert dynamics[name].default == getattr(DYNAMICS, name), name


def test_cli_query_options_read_config() -> None:
    command = typer.main.get_command(app).commands["query"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    for name in QUERY_FIELDS:
        assert defaults[name] == getattr(QUERY, name), name


# A fresh interpreter with other defaults in lam_engine.config, set before lam_client is
# imported: the signatures and the help text follow with no other edit.
CHANGED = """
import dataclasses, inspect, json, sys
import lam_engine.config as config
config.QUERY = dataclasses.replace(config.QUERY, top_k=7, steps=3)
config.DYNAMICS = dataclasses.replace(config.DYNAMICS, t_max=2.5)
from typer.testing import CliRunner
from lam_client import AsyncClient, Client
from lam_client.cli import app
sig = {c.__name__: {m: {k: p.default for k, p in inspect.signature(getattr(c, m)).parameters.items()
                        if p.default is not inspect.Parameter.empty}
                    for m in ("query", "dynamics")}
       for c in (Client, AsyncClient)}
help = CliRunner().invoke(app, ["query", "--help"]).output
json.dump({"sig": sig, "help": help}, sys.stdout)
"""


def test_a_changed_default_reaches_sdk_and_cli_help() -> None:
    env = {**os.environ, "COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHANGED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(done.stdout)
    for cls in ("Client", "AsyncClient"):
        assert got["sig"][cls]["query"]["top_k"] == 7
        assert got["sig"][cls]["query"]["steps"] == 3
        assert got["sig"][cls]["dynamics"]["t_max"] == 2.5
    assert "[default: 7]" in _option_line(got["help"], "--top-k"), got["help"]
    assert "[default: 3]" in _option_line(got["help"], "--steps"), got["help"]


def _option_line(help_text: str, option: str) -> str:
    return next(ln for ln in help_text.splitlines() if re.search(rf"\s{option}\s", ln))
