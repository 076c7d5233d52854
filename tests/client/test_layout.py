"""lam_client stays small and acyclic: modules ≤ 400 lines, imports within it form a DAG
(TYPE_CHECKING and function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import lam_client

PACKAGE = Path(lam_client.__file__).parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    return {
        ".".join(("lam_client", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): p
        for p in PACKAGE.rglob("*.py")
    }


def test_modules_are_small() -> None:
    sizes = {name: len(p.read_text().splitlines()) for name, p in _modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = node.module or ""
            full = f"{base}.{mod}".strip(".") if node.level else mod
            # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod.
            subs = [f"{full}.{a.name}" for a in node.names if f"{full}.{a.name}" in known]
            targets = subs or [full]
        out.update(t for t in targets if t in known and t != name)
    return out


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {n: _imports(n, p, set(modules)) for n, p in modules.items()}
    assert graph["lam_client"] >= {"lam_client.client", "lam_client.async_client"}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " → ".join((*path, node))
        if node in done:
            return
        for dep in graph[node]:
            visit(dep, (*path, node))
        done.add(node)

    for name in graph:
        visit(name, ())
