"""docs/operations.md documents every setting (with its default), metric and alert."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import REPO, documented_metrics

DOC = REPO / "docs" / "operations.md"


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """Rows of the markdown table whose first header cell is `first_header`."""
    lines = text.splitlines()
    for k, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            rows = []
            for row in lines[k + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table starting with {first_header!r}")


def doc_value(cell: str) -> str:
    m = re.match(r"`([^`]*)`", cell)
    return m.group(1) if m else cell


def same_default(doc: str, default: Any) -> bool:
    if default is None:
        return doc == "unset"
    if isinstance(default, bool):
        return doc == str(default).lower()
    if isinstance(default, int | float):
        return float(doc) == float(default)
    if isinstance(default, Path):
        return Path(doc) == default
    return doc == str(default)


def test_every_setting_is_documented_with_its_default() -> None:
    from service.settings import Settings

    rows = {r[0].strip("`"): doc_value(r[1]) for r in table_rows(DOC.read_text(), "variable")}
    fields = {f"LAM_{name.upper()}": f.default for name, f in Settings.model_fields.items()}
    assert rows.keys() == fields.keys(), (
        f"undocumented: {fields.keys() - rows.keys()}, unknown: {rows.keys() - fields.keys()}"
    )
    for var, default in fields.items():
        assert same_default(rows[var], default), f"{var}: doc {rows[var]!r}, code {default!r}"


def test_every_metric_is_documented_with_its_type() -> None:
    rows = {r[0].strip("`"): r[1] for r in table_rows(DOC.read_text(), "metric")}
    want = {name: kind for name, (kind, _) in documented_metrics().items()}
    assert rows == want


def test_every_alert_has_a_section_and_its_runbook_anchor() -> None:
    text = DOC.read_text()
    headings = {h.strip() for h in re.findall(r"^### (.+)$", text, re.M)}
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "lam-rules.yaml").read_text())
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        assert rule["alert"] in headings
        # GitHub's anchor of a heading that is one word: its lower case.
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"


@pytest.mark.parametrize("path", ["docker/Dockerfile", "docker/Dockerfile.cuda"])
def test_documented_image_size_matches_the_dockerfile_comment(path: str) -> None:
    comment = (REPO / path).read_text()
    size = re.search(r"Expected size: about ([\d.]+) GB", comment)
    assert size, path
    rows = {doc_value(r[0]): r[1] for r in table_rows(DOC.read_text(), "image")}
    assert rows[path] == f"≈ {size.group(1)} GB"
