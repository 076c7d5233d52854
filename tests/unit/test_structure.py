"""The house rules that keep the code readable, checked on the source itself.

- Imports form a DAG in each package, TYPE_CHECKING and function-level imports included
  (a circle hidden under TYPE_CHECKING still couples the modules both ways).
- No module over 400 lines, except the ones listed in LONG_MODULES with the reason.
- docs/API.md is the contract in ../shared/design/API.md, word for word.
- One source for each fact of the contract: no second status table, no literal copies of
  the query/dynamics defaults outside lam_engine/config.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lam_engine", "service", "lam_client", "lam_cluster")
MAX_LINES = 400
# module (relative path) → why it is allowed to be longer. Keep this empty when possible.
LONG_MODULES: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        base = ROOT / pkg
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def import_graph() -> dict[str, set[str]]:
    """module → modules of the same tree it imports, at any depth of its AST."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = (
                    _resolve(name, is_pkg, node.level, node.module)
                    if node.level
                    else node.module or ""
                )
                # `from pkg import sub` imports the submodule when there is one; only names
                # that are not submodules come from pkg's own __init__.
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [mod, *subs]
            for t in targets:
                # The longest known module that is `t` or a parent of it.
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 20, "the walker found too few modules to be meaningful"
    # Package __init__ modules re-export their children; an edge child → parent __init__ would
    # be a real circle (the child runs the parent's imports), so it is kept in the graph.
    assert find_cycles(graph) == []


def test_lam_engine_imports_no_service_or_fastapi() -> None:
    for name, deps in import_graph().items():
        if name.startswith("lam_engine"):
            bad = {d for d in deps if d.startswith(("service", "lam_client", "lam_cluster"))}
            assert not bad, f"{name} imports {bad}"
    for path in (ROOT / "lam_engine").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (fastapi|starlette)\b", text, re.M), path


def test_modules_stay_small() -> None:
    too_long = {}
    for path in _modules().values():
        rel = str(path.relative_to(ROOT))
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and rel not in LONG_MODULES:
            too_long[rel] = n
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_docs_api_md_is_the_contract() -> None:
    shared = ROOT.parent / "shared" / "design" / "API.md"
    if not shared.is_file():
        pytest.skip("../shared/design/API.md is not beside this checkout")
    assert (ROOT / "docs" / "API.md").read_text() == shared.read_text()


def _python_files(*dirs: str) -> list[Path]:
    return [p for d in dirs if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py")]


def test_one_status_table() -> None:
    """HTTP statuses of engine errors live on their families; nobody maps classes again."""
    pattern = re.compile(
        r"\b(InvalidInputError|NotFoundError|ConflictError|LimitExceededError|StorageError)"
        r"\b\s*[:,]\s*(4\d\d|5\d\d)\b"
    )
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _python_files(*PACKAGES)
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, f"a second table of statuses: {hits}"


def test_query_defaults_have_one_source() -> None:
    """The defaults of API.md's query (tol 1e-6) are literals only in lam_engine/config.py."""
    pattern = re.compile(r"(?<![\w.])1e-0?6\b")
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _python_files(*PACKAGES)
        if p != ROOT / "lam_engine" / "config.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert not hits, f"query tolerance default copied: {hits}"


def test_the_sdk_and_the_contract_import_without_torch() -> None:
    """HTTP users of the SDK and CLI read defaults and error families from lam_engine's
    config and errors; that must not load torch or FAISS (seconds at every `lam` call)."""
    import subprocess
    import sys

    code = (
        "import sys, lam_client, lam_client.cli, lam_engine, lam_engine.config\n"
        "heavy = sorted({'torch', 'faiss'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
