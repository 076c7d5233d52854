"""Filters in the SDK (http and embedded alike): the typed builders, query, energy, scroll,
count, delete_many by filter, payload_index, and the error codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from lam_client import Client
from lam_client.errors import Conflict, InvalidInput
from lam_client.filters import FieldCondition, Filter, HasId, IsNull, MatchAny, MatchValue, Range
from tests import reference as ref

XI = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=np.float32)


def test_builders_serialize_to_the_api_json() -> None:
    f = Filter(
        must=[FieldCondition(key="t", match=MatchValue(value="a"))],
        should=[FieldCondition(key="n", range=Range(gte=1, lt=3)), IsNull(key="x")],
        must_not=[HasId(has_id=["m1"]), Filter(must=[{"key": "k", "match": {"any": [1]}}])],
    )
    assert f.to_dict() == {
        "must": [{"key": "t", "match": {"value": "a"}}],
        "should": [{"key": "n", "range": {"gte": 1, "lt": 3}}, {"key": "x", "is_null": True}],
        "must_not": [{"has_id": ["m1"]}, {"must": [{"key": "k", "match": {"any": [1]}}]}],
    }
    assert FieldCondition(key="t", match=MatchAny(any=["a", "b"])).to_dict() == {
        "key": "t",
        "match": {"any": ["a", "b"]},
    }
    with pytest.raises(ValueError):
        FieldCondition(key="t").to_dict()


def test_filtered_retrieval_and_writes(client: Client, bank_name: str) -> None:
    client.create_bank(bank_name, 3, beta=3.0, payload_index={"t": "keyword"})
    pls = [{"t": t, "n": i} for i, t in enumerate("abab")]
    client.store(bank_name, XI, ids=[f"m{i}" for i in range(4)], payloads=pls)
    a = Filter(must=[FieldCondition(key="t", match=MatchValue(value="a"))])
    cue = np.array([[0.7, 0.7, 0.1]], dtype=np.float32)
    res = client.query(bank_name, cue, steps=1, filter=a)
    want, _, _ = ref.retrieve(XI[[0, 2]], cue, 3.0, steps=1, tol=0.0)
    np.testing.assert_allclose(res.results[0].state, want[0], atol=1e-5)
    assert {m.id for m in res.results[0].matches} <= {"m0", "m2"}
    e = client.energy(bank_name, cue, constants=True, filter=a.to_dict())
    np.testing.assert_allclose(
        e.energies, ref.energy(XI[[0, 2]], cue, 3.0, constants=True), rtol=1e-5
    )
    assert client.count(bank_name) == 4 and client.count(bank_name, a) == 2
    page = client.scroll(bank_name, 1, filter=a)
    assert [m.id for m in page.memories] == ["m0"] and page.next_cursor
    page = client.scroll(bank_name, 5, page.next_cursor, filter=a)
    assert [m.id for m in page.memories] == ["m2"] and page.next_cursor is None
    with pytest.raises(Conflict) as c:
        client.query(bank_name, cue, filter=Filter(must=[HasId(has_id=[])]))
    assert c.value.code == "empty_selection"
    with pytest.raises(InvalidInput) as bad:
        client.count(bank_name, {"must": [{"key": "", "is_null": True}]})
    assert bad.value.code == "invalid_filter"
    assert client.delete_many(bank_name, filter=a) == 2
    assert client.delete_many(bank_name, ["m1"]) == 1
    assert client.count(bank_name) == 1
    bank = client.update_bank(bank_name, payload_index={"t": "keyword", "n": "integer"})
    assert bank.payload_index == {"t": "keyword", "n": "integer"}
    with pytest.raises(ValueError):
        client.delete_many(bank_name)


def test_async_client_takes_filters(tmp_path: Path) -> None:
    from lam_client import AsyncClient

    a = Filter(must=[FieldCondition(key="t", match=MatchValue(value="a"))])

    async def run() -> tuple[int, int, list[str]]:
        async with AsyncClient(path=tmp_path / "async") as ac:
            await ac.create_bank("f", 3, payload_index={"t": "keyword"})
            pls = [{"t": t} for t in "abab"]
            await ac.store("f", XI, ids=[f"m{i}" for i in range(4)], payloads=pls)
            res = await ac.query("f", XI[0], filter=a)
            n = await ac.count("f", a)
            deleted = await ac.delete_many("f", filter=a)
            return n, deleted, [m.id for m in res.results[0].matches]

    n, deleted, ids = asyncio.run(run())
    assert n == 2 and deleted == 2 and set(ids) <= {"m0", "m2"}
