"""The API suite's cases that do not run as they are on a cluster bank (backends
`cluster` and `ray`, tests/api/backends.py): ONE table, grouped by feature, each entry with
its argument. docs/cluster.md "Tests" shows it.

- `SKIP`: cannot apply on a cluster bank (the test asserts something only an in-process
  bank has); skipped there, with the argument as the reason. It runs on `engine`.
- `XFAIL`: the router refuses it today (422 `invalid_parameter`, docs/cluster.md "Refused
  on a cluster bank"); `xfail(strict=True)`, so that once the work named merges the case
  XPASSes, the run fails, and the entry is removed.

A key is `<file stem>::<test name>` (every parameter of the test).
"""

from __future__ import annotations

REFUSED = "refused on cluster banks until {} (422 invalid_parameter today)"

# feature → {test key: argument}
SKIP: dict[str, dict[str, str]] = {
    "bank description": {
        "test_api_banks::test_create_returns_201_with_defaults_of_api_md": (
            'asserts "device": "cpu", the process\'s own device; a cluster bank has none '
            '(its replicas pick theirs on their nodes): the router says "ray"'
        ),
        "test_api_shards::test_create_sharded_bank_describes_shards_and_refuses_replicas": (
            "asserts replicas > 1 is 422 cluster_required, which API.md says only outside "
            "cluster mode (the router takes replicas up to its live nodes, "
            "tests/unit/test_cluster_router.py checks the bound)"
        ),
    },
    "text banks": {
        "test_text_banks::test_texts_survive_a_restart": (
            "restarts the module's own server process (`server`, engine backend) and reads "
            "it back; the router's restart is tests/unit/test_cluster_router.py's"
        ),
    },
    "GET /v1/cluster": {
        "test_api_cluster::test_cluster_lists_the_local_node_and_every_banks_shards": (
            'asserts the answer outside cluster mode (one "local" node, one active replica); '
            "the router's answer (its Ray nodes, replica states) is "
            "tests/unit/test_cluster_router.py's and tests/cluster/test_router.py's"
        ),
    },
}
XFAIL: dict[str, dict[str, str]] = {
    "PATCH of the forgetting settings": {
        "test_api_forgetting::test_strengths_in_and_out_and_reinforce": REFUSED.format(
            "PATCH of half_life_s / default_ttl_s reaches the router's timing and the "
            "replicas (the test ends by PATCHing them)"
        ),
    },
    "scroll order": {
        "test_text_banks::test_get_scroll_and_energy": (
            "not refused but not built: its first page of a scroll is the one-shard bank's "
            "first three memories (see the next entry)"
        ),
        "test_api_shards::test_sharded_answers_equal_one_shard_over_http": (
            "compares scroll pages with a one-shard bank's, which come in insertion order; "
            "a cluster bank's scroll walks the shards one after another (docs/cluster.md). "
            "API.md calls GET /memories' order the bank's memory order without fixing it, "
            "and dynamics' `hidden` follows the same order on both; one global insertion "
            "order needs a merge of the shards' pages by write sequence (the cursor and "
            "the replicas' keys change)"
        ),
    },
}


def reasons() -> dict[str, tuple[str, str]]:
    """test key → ("skip" | "xfail", reason), over every feature group."""
    out: dict[str, tuple[str, str]] = {}
    for kind, table in (("skip", SKIP), ("xfail", XFAIL)):
        for feature, cases in table.items():
            for key, why in cases.items():
                assert key not in out, f"{key} is listed twice"
                out[key] = (kind, f"{feature}: {why}")
    return out


def markdown() -> str:
    """The table as docs/cluster.md "Tests" shows it (tests/api/test_cluster_cases.py keeps
    the two equal)."""
    rows = ["| feature | case (tests/api/…) | on cluster, ray | why |", "| --- | --- | --- | --- |"]
    for kind, table in (("skip", SKIP), ("xfail (strict)", XFAIL)):
        for feature, cases in table.items():
            for key, why in cases.items():
                rows.append(f"| {feature} | `{key}` | {kind} | {why} |")
    return "\n".join(rows) + "\n"
