"""tests/api/cluster_cases.py stays true: every entry names a test of the API suite that
runs on the routed backends (so a renamed or removed test cannot leave a stale entry), and
the client default of tests/api/backends.py shards only what it should."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from tests.api import backends, cluster_cases
from tests.api.api_support import ClientFactory


@pytest.mark.parametrize("key", sorted(cluster_cases.reasons()))
def test_every_entry_names_a_test_on_the_api_fixtures(key: str) -> None:
    module, name = key.split("::")
    fn = getattr(importlib.import_module(f"tests.api.{module}"), name, None)
    assert callable(fn), f"{key}: no such test"
    uses = set(inspect.signature(fn).parameters)
    on_backends = {"client", "bank", "make_client", "http", "notes"}  # conftest, test_text_banks
    assert uses & on_backends, f"{key} does not run on the backends"
    kind, why = cluster_cases.reasons()[key]
    assert kind in ("skip", "xfail") and len(why) > 20


def test_docs_show_the_table_as_it_is() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    assert cluster_cases.markdown() in doc, "docs/cluster.md: paste cluster_cases.markdown()"


def test_backends_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.ENV, raising=False)
    assert backends.selected() == ["engine"]
    monkeypatch.setenv(backends.ENV, "ray, engine,cluster")
    assert backends.selected() == ["engine", "cluster", "ray"]
    monkeypatch.setenv(backends.ENV, "engine,gpu")
    with pytest.raises(ValueError, match="gpu"):
        backends.selected()


def test_sharding_client_fills_only_what_a_bank_creation_leaves_out(
    make_client: ClientFactory, api_backend: str
) -> None:
    c = make_client()
    a = c.post("/v1/banks", json={"name": "a", "dim": 2}).json()
    b = c.post("/v1/banks", json={"name": "b", "dim": 2, "shards": 1, "replicas": 1}).json()
    want = (backends.SHARDS, backends.REPLICAS) if api_backend in backends.ROUTED else (1, 1)
    assert (a["shards"], a["replicas"]) == want
    assert (b["shards"], b["replicas"]) == (1, 1)
