"""The Grafana dashboard: valid JSON and PromQL, only lam_* metrics that a live server exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.deploy_promql import (
    grafana_to_promql,
    grafana_variable_metric_names,
    metric_names,
)
from tests.deploy.deploy_support import (
    documented_metrics,
    documented_series,
    require_tool,
    run_tool,
    series_names,
)
from tests.harness import LamServer

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "lam-dashboard.json"
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}
# What the operations guide promises the dashboard shows.
REQUIRED = {
    "lam_requests_total",  # request rate
    "lam_errors_total",  # errors by code
    "lam_request_duration_seconds_bucket",  # p50 / p99
    "lam_query_batch_size_bucket",
    "lam_query_steps_bucket",  # update steps
    "lam_microbatch_size_bucket",
    "lam_bank_memories",
    "lam_bank_memory_bytes",
    "lam_prefilter_queries_total",
    "lam_data_dir_free_bytes",
}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows nest their panels


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    dash = load()
    out = [
        (f"{p['title']}/{t['refId']}", t["expr"])
        for p in panels(dash)
        for t in p.get("targets", [])
    ]
    return out


def variable_queries() -> list[tuple[str, str]]:
    out = []
    for v in load()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append((v["name"], q["query"] if isinstance(q, dict) else q))
    return out


def all_names() -> set[str]:
    names = set().union(*(metric_names(e) for _, e in expressions()))
    return names.union(*(grafana_variable_metric_names(q) for _, q in variable_queries()))


def test_dashboard_shape() -> None:
    dash = load()
    assert dash["uid"] == "lam-overview" and dash["title"] == "LAM"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    for p in panels(dash):
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert [t["refId"] for t in p["targets"]] == [chr(65 + k) for k in range(len(p["targets"]))]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in panels(load()):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells.get((x, y))}"
                cells[(x, y)] = p["title"]


def test_dashboard_shows_what_operations_md_promises() -> None:
    assert all_names() >= REQUIRED, REQUIRED - all_names()


@pytest.mark.parametrize(("where", "expr"), expressions())
def test_expression_uses_only_documented_lam_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    assert all(n.startswith("lam_") for n in names), f"{where}: {names}"
    assert names <= documented_series(), f"{where}: undocumented {names - documented_series()}"


_BY = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"[{,]\s*(\w+)\s*(?:=~|!~|!=|=)")


@pytest.mark.parametrize(("where", "expr"), expressions())
def test_expression_uses_only_labels_its_metrics_have(where: str, expr: str) -> None:
    table = documented_metrics()
    names = metric_names(expr)
    allowed = set(TARGET_LABELS)
    for n in names:
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        _, labels = table[base] if base in table else table[n]
        allowed |= labels | ({"le"} if n.endswith("_bucket") else set())
    used = {lbl.strip() for grp in _BY.findall(expr) for lbl in grp.split(",") if lbl.strip()}
    used |= set(_MATCHER.findall(expr))
    assert used <= allowed, f"{where}: unknown labels {used - allowed}"


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule (Grafana macros substituted).
    promtool = require_tool("promtool")
    records = [
        {"record": f"dashboard:expr_{k}", "expr": grafana_to_promql(e)}
        for k, (_, e) in enumerate(expressions())
    ]
    queries = [grafana_to_promql(q) for _, q in variable_queries()]
    records += [
        {"record": f"dashboard:var_{k}", "expr": re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q)}
        for k, q in enumerate(queries)
    ]
    rules = tmp_path / "dashboard.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    proc = run_tool([promtool, "check", "rules", str(rules)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(records)} rules found" in proc.stdout


# ---- against a live server --------------------------------------------------------------------


def exercise(server: LamServer) -> None:
    """Traffic that makes every labelled series appear: banks, stores, queries, an error."""
    vectors = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for name, extra in (("plain", {}), ("filtered", {"prefilter": {"kind": "flat", "k": 2}})):
            r = c.post("/v1/banks", json={"name": name, "dim": 4, "beta": 8.0, **extra})
            assert r.status_code in (200, 201), r.text
            r = c.post(
                f"/v1/banks/{name}/memories", json={"memories": [{"vector": v} for v in vectors]}
            )
            assert r.status_code == 200, r.text
            r = c.post(
                f"/v1/banks/{name}/query", json={"queries": [[0.9, 0.1, 0.0, 0.0]], "steps": 3}
            )
            assert r.status_code == 200, r.text
        r = c.post("/v1/banks/plain/query", json={"queries": [[1.0, 0.0]]})  # wrong dimension
        assert r.status_code == 422, r.text


@pytest.fixture(scope="module")
def scraped(live_server: LamServer) -> dict[str, set[str]]:
    """sample name → label names, from the live server's /metrics after some traffic."""
    exercise(live_server)
    r = httpx.get(live_server.url + "/metrics", timeout=10)
    assert r.status_code == 200
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_live_server_exports_every_dashboard_metric(scraped: dict[str, set[str]]) -> None:
    missing = all_names() - scraped.keys()
    assert not missing, f"dashboard metrics the server does not export: {sorted(missing)}"


def test_live_server_exports_every_rule_metric(repo: Path, scraped: dict[str, set[str]]) -> None:
    doc = yaml.safe_load((repo / "deploy" / "prometheus" / "lam-rules.yaml").read_text())
    names = set().union(*(metric_names(r["expr"]) for g in doc["groups"] for r in g["rules"]))
    missing = names - {"up"} - scraped.keys()  # `up` is Prometheus' own
    assert not missing, f"rule metrics the server does not export: {sorted(missing)}"


def test_live_labels_match_the_documented_table(scraped: dict[str, set[str]]) -> None:
    for name, (kind, labels) in documented_metrics().items():
        for series in sorted(series_names(name, kind)):
            want = labels | ({"le"} if series.endswith("_bucket") else set())
            assert scraped.get(series) == want, f"{series}: {scraped.get(series)} != {want}"
