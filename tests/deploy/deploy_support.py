"""Helpers of the deployment tests: the tools they run and the documented metrics."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO as REPO
from tests.harness import free_port as free_port

OVERLAYS = ("cpu", "gpu", "cluster")
INSTALL_HINT = "install it with `bash scripts/install-test-tools.sh` (run by `make test`)"


def require_tool(name: str) -> str:
    """Absolute path of an executable; fails (never skips) the test when it is missing."""
    # The interpreter's bin dir first: pip puts console scripts (hadolint, kubectl) there.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return path


def run_tool(
    argv: list[str], *, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


_METRIC_ROW = re.compile(
    r"^\|\s*`(?P<name>lam_\w+)`\s*\|\s*(?P<type>\w+)\s*\|\s*(?P<labels>[^|]*)\|"
)


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """name → (type, labels) from the metrics table of docs/internals.md."""
    out: dict[str, tuple[str, set[str]]] = {}
    for line in (REPO / "docs" / "internals.md").read_text().splitlines():
        if m := _METRIC_ROW.match(line):
            # `outcome` (`prefiltered`, ...): the parenthesis lists values, not labels.
            labels = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", m["labels"])))
            out[m["name"]] = (m["type"], labels)
    assert out, "no metric table in docs/internals.md"
    return out


def series_names(name: str, kind: str) -> set[str]:
    """The sample names a metric of this type exposes in the text format."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    return {name}


def documented_series() -> set[str]:
    return {s for name, (kind, _) in documented_metrics().items() for s in series_names(name, kind)}
