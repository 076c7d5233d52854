"""The shared text-bank plans without a server: which query form scores at the cue, the
filtered search's growing candidate pool, ids and payloads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lam_client.errors import InvalidInput
from lam_client.integrations._sync_textbank import TextBank
from lam_client.integrations._textbank import (
    BankSpec,
    Hit,
    dedupe_last,
    from_payload,
    new_ids,
    passes,
    search_plan,
    to_payload,
)
from lam_client.models import Bank, QueryResponse


class FakeClient:
    """Answers get_bank and query like a server that takes steps 0 (or refuses it)."""

    def __init__(self, steps0: bool, n: int = 10, dim: int = 3) -> None:
        self.steps0, self.n, self.dim = steps0, n, dim
        self.calls: list[dict[str, Any]] = []

    def get_bank(self, name: str) -> Bank:
        return Bank.from_dict({"name": name, "dim": self.dim, "count": self.n})

    def query(self, bank: str, vector: Any, **kw: Any) -> QueryResponse:
        self.calls.append(kw)
        if kw["steps"] == 0 and not self.steps0:
            raise InvalidInput("body.steps: must be ≥ 1", status=422, code="validation_error")
        top = min(kw["top_k"], self.n)
        matches = [
            {
                "id": f"m{i}",
                "weight": 0.1,
                "score": 1.0 - i / 10,
                "payload": to_payload(f"t{i}", {"i": i, "even": i % 2 == 0}),
            }
            for i in range(top)
        ]
        state = [0.0] * self.dim
        return QueryResponse.from_dict(
            {
                "results": [
                    {
                        "state": state,
                        "steps": kw["steps"],
                        "converged": True,
                        "energy": -0.5,
                        "matches": matches,
                    }
                ]
            }
        )


def test_steps_zero_when_the_server_takes_it() -> None:
    fake = FakeClient(steps0=True)
    bank = TextBank(fake, BankSpec("b"))  # type: ignore[arg-type]
    got = bank.search([1.0, 0.0, 0.0], 2)
    assert got is not None and [h.id for h in got.hits] == ["m0", "m1"]
    assert fake.calls == [{"top_k": 2, "with_vectors": False, "steps": 0}]
    assert bank.steps0 is True


def test_one_clamped_step_when_it_refuses_steps_zero_then_no_more_probes() -> None:
    fake = FakeClient(steps0=False)
    bank = TextBank(fake, BankSpec("b"))  # type: ignore[arg-type]
    got = bank.search([1.0, 0.0, 0.0], 2)
    assert got is not None and got.steps == 0  # reported as scored at the cue
    assert [c["steps"] for c in fake.calls] == [0, 1]
    np.testing.assert_array_equal(fake.calls[1]["mask"], [True, True, True])
    bank.search([1.0, 0.0, 0.0], 2)
    assert [c["steps"] for c in fake.calls] == [0, 1, 1]


def test_a_filtered_search_grows_its_pool_until_k_pass_or_all_seen() -> None:
    fake = FakeClient(steps0=True, n=200)
    bank = TextBank(fake, BankSpec("b"))  # type: ignore[arg-type]
    got = bank.search([1.0, 0.0, 0.0], 3, flt={"i": 150})
    assert got is not None and [h.id for h in got.hits] == ["m150"]
    assert [c["top_k"] for c in fake.calls] == [19, 76, 304]  # 200 < 304: the whole bank


def test_search_plan_without_filter_is_one_request() -> None:
    plan = search_plan(5, None)
    assert next(plan) == 5
    hits = [Hit(f"m{i}", "", {}, 0.0, 0.0) for i in range(5)]
    with pytest.raises(StopIteration) as done:
        plan.send(hits)
    assert done.value.value == hits


def test_filters_ids_and_payloads() -> None:
    assert passes({"a": 1, "t": ["x", "y"]}, {"a": 1, "t": "y"})
    assert not passes({"a": 1}, {"a": 2}) and not passes({}, {"a": None, "b": 1})
    assert passes({"a": 3}, lambda m: m["a"] > 2)
    ids = new_ids(["x", None], 2)
    assert ids[0] == "x" and len(ids[1]) == 36
    with pytest.raises(ValueError):
        new_ids(["x"], 2)
    kept = dedupe_last(["a", "b", "a"], np.eye(3, dtype=np.float32), [{"n": 0}, {"n": 1}, {"n": 2}])
    assert kept[0] == ["b", "a"] and kept[2] == [{"n": 1}, {"n": 2}]
    assert from_payload({"page_content": "t", "metadata": {"k": 1}}) == ("t", {"k": 1})
    assert from_payload({"other": 1}) == ("", {"other": 1})  # written by someone else


def test_a_bank_deleted_behind_the_store_is_created_again(embedded_client: Any) -> None:
    bank = TextBank(embedded_client, BankSpec("vanishing"))
    bank.add(np.eye(3, dtype=np.float32), ["a", "b", "c"], [to_payload("x", None)] * 3)
    embedded_client.delete_bank("vanishing")
    bank.add(np.eye(3, dtype=np.float32)[:1], ["d"], [to_payload("y", None)])
    assert embedded_client.get_bank("vanishing").count == 1
    embedded_client.delete_bank("vanishing")
