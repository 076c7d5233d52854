"""The PromQL metric-name reader that the dashboard and rule tests rely on."""

from __future__ import annotations

import pytest

from tests.deploy.deploy_promql import (
    grafana_to_promql,
    grafana_variable_metric_names,
    metric_names,
)

CASES = [
    ("up", {"up"}),
    ('up{job="lam"} == 0', {"up"}),
    ("lam_ready == 0", {"lam_ready"}),
    ("rate(lam_requests_total[5m])", {"lam_requests_total"}),
    (
        'sum by (job, namespace) (rate(lam_requests_total{status=~"5.."}[5m]))',
        {"lam_requests_total"},
    ),
    ("sum(rate(a_total[5m])) by (route) / sum without (le) (b)", {"a_total", "b"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
    ("a / on (instance) group_left (bank) b", {"a", "b"}),
    ("a / ignoring(code) group_right b", {"a", "b"}),
    ("a > bool 0.5 and b or c unless d", {"a", "b", "c", "d"}),
    ("a offset 5m + b offset -1h30m", {"a", "b"}),
    ("predict_linear(free[6h], 24 * 3600) < 1e9", {"free"}),
    ('{__name__="lam_banks", instance="x"}', {"lam_banks"}),
    ('label_replace(a, "dst", "$1 by sum", "src", "(.*)")', {"a"}),
    ('count_values("version", build_info)', {"build_info"}),
    ("topk(3, sum by (bank) (lam_bank_memories))", {"lam_bank_memories"}),
    ("max_over_time(deriv(m[10m:1m])[1h:])", {"m"}),
    ('x{route=~".*/query", method!="GET"} @ start()', {"x"}),
    ("vector(1) + scalar(time())", set()),
    ("sum(a:recorded:rate5m)", {"a:recorded:rate5m"}),
]


@pytest.mark.parametrize(("expr", "names"), CASES)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_regex_on_the_name_is_refused() -> None:
    with pytest.raises(ValueError, match="open set"):
        metric_names('{__name__=~"lam_.*"}')


@pytest.mark.parametrize("expr", ['a{b="c}', "sum(rate(a[5m])", "a[5m"])
def test_unbalanced_input_is_an_error(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


def test_grafana_macros_become_promql() -> None:
    expr = 'rate(a{instance=~"$instance", bank=~"${bank}"}[$__rate_interval])'
    assert grafana_to_promql(expr) == 'rate(a{instance=~".*", bank=~".*"}[5m])'


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("label_values(lam_ready, instance)", {"lam_ready"}),
        ('label_values(lam_bank_memories{instance=~"$instance"}, bank)', {"lam_bank_memories"}),
        ("label_values(instance)", set()),
        ("query_result(topk(5, lam_bank_memories))", {"lam_bank_memories"}),
        ("metrics(lam_.*)", set()),
    ],
)
def test_grafana_variable_queries(query: str, names: set[str]) -> None:
    assert grafana_variable_metric_names(query) == names
