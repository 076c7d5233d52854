"""Metric names referenced by a PromQL expression (and Grafana's PromQL dialect).

Not a full PromQL parser: a tokenizer that drops what cannot be a metric name
(strings, label matchers, ranges, numbers, durations, functions, aggregation
and set keywords, grouping label lists) and keeps bare identifiers. Names given
as `{__name__="x"}` are read from the matcher; a `__name__` regex is refused,
because no finite set of names can be read from it.
"""

from __future__ import annotations

import re

# Grafana replaces these before the query reaches Prometheus.
_GRAFANA_INTERVALS = re.compile(r"\$__(?:rate_interval|interval|range)(?:_ms|_s)?\b")
_GRAFANA_VAR = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER_OR_DURATION = re.compile(r"(?:0x[0-9a-fA-F]+|[0-9.]+(?:[eE][+-]?[0-9]+)?[a-zA-Z0-9_.]*)")
_NAME_MATCHER = re.compile(r"__name__\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")

AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
# Keywords followed by a parenthesised label list.
_LABEL_LIST_KEYWORDS = frozenset(["by", "without", "on", "ignoring", "group_left", "group_right"])
_OTHER_KEYWORDS = frozenset(["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"])


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's macros so that Prometheus (promtool) accepts the expression."""
    expr = _GRAFANA_INTERVALS.sub("5m", expr)
    # Template variables only ever sit inside label matcher strings in our dashboards.
    return _GRAFANA_VAR.sub(".*", expr)


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {expr!r}")


def _skip_group(expr: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket that closes the one at `i` (strings skipped)."""
    depth = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_!r} in {expr!r}")


def _next_nonspace(expr: str, i: int) -> int:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return i


def metric_names(expr: str) -> set[str]:
    """The metric names that a PromQL expression selects."""
    expr = grafana_to_promql(expr)
    names: set[str] = set()
    depth = 0
    i = 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
        elif c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "{":
            end = _skip_group(expr, i, "{", "}")
            for op, value in _NAME_MATCHER.findall(expr[i:end]):
                if op != "=":
                    raise ValueError(f"__name__{op} selects an open set of names: {expr!r}")
                names.add(value[1:-1])
            i = end
        elif c == "[":
            i = _skip_group(expr, i, "[", "]")
        elif c.isdigit() or (c == "." and i + 1 < len(expr) and expr[i + 1].isdigit()):
            m = _NUMBER_OR_DURATION.match(expr, i)
            assert m is not None
            i = m.end()
        elif (m := _IDENT.match(expr, i)) is not None:
            word = m.group()
            i = m.end()
            j = _next_nonspace(expr, i)
            follows_paren = j < len(expr) and expr[j] == "("
            lower = word.lower()
            if lower in _LABEL_LIST_KEYWORDS:
                if follows_paren:
                    i = _skip_group(expr, j, "(", ")")
            elif lower == "offset":
                k = _next_nonspace(expr, i)
                k += expr[k : k + 1] == "-"
                duration = _NUMBER_OR_DURATION.match(expr, k)
                i = duration.end() if duration else k
            elif follows_paren or lower in _OTHER_KEYWORDS:
                pass  # a function call, or `sum by (...) (...)` handled by the keyword branch
            elif lower in AGGREGATIONS and expr[j : j + 2].lower() in ("by", "wi"):
                pass
            else:
                names.add(word)
        else:
            depth += (c == "(") - (c == ")")
            if depth < 0:
                raise ValueError(f"unbalanced ')' in {expr!r}")
            i += 1  # operators, parentheses, commas, @
    if depth:
        raise ValueError(f"unbalanced '(' in {expr!r}")
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<args>.*)\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<args>.*)\)\s*$", re.S)


def grafana_variable_metric_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query (label_values, query_result, metrics)."""
    if m := _LABEL_VALUES.match(query):
        args = m.group("args")
        # label_values(label) has no selector; label_values(selector, label) has.
        depth, cut = 0, -1
        for k, c in enumerate(args):
            depth += c in "({["
            depth -= c in ")}]"
            if c == "," and depth == 0:
                cut = k
        return metric_names(args[:cut]) if cut >= 0 else set()
    if m := _QUERY_RESULT.match(query):
        return metric_names(m.group("args"))
    if query.strip().startswith(("label_names(", "metrics(")):
        return set()
    return metric_names(query)
