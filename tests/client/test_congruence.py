"""The same scenario through the HTTP client, the embedded client and the async client gives
the same results (within 1e-5): one code path of parsing, two transports, one engine."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lam_client import AsyncClient, Client


@dataclass
class Outcome:
    bank: dict[str, Any]
    store_ids: list[str]
    states: np.ndarray
    energies_q: np.ndarray
    match_ids: list[list[str]]
    weights: np.ndarray
    energies: np.ndarray
    gradients: np.ndarray
    scrolled: list[tuple[str, Any]]
    scrolled_vectors: np.ndarray
    deleted: int
    count_after: int
    restored_count: int
    restored_query: np.ndarray
    dynamics_energy: np.ndarray
    diag: tuple[int, int, float | None]


def data() -> tuple[np.ndarray, list[str], list[dict[str, Any]], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2024)
    xi = rng.standard_normal((20, 16)).astype(np.float32)  # (N, d)
    ids = [f"id-{i}" for i in range(20)]
    payloads = [{"n": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(20)]
    cues = xi[:4] + 0.4 * rng.standard_normal((4, 16)).astype(np.float32)  # (4, d)
    mask = rng.random((4, 16)) > 0.3
    return xi, ids, payloads, cues, mask


CONFIG = {"beta": 2.0, "normalize": True}


def scenario(c: Client, name: str) -> Outcome:
    xi, ids, payloads, cues, mask = data()
    bank = c.create_bank(name, dim=16, **CONFIG)
    stored = c.upload(name, xi, ids=ids, payloads=payloads, batch_size=8, progress=False)
    q = c.query(name, cues, mask=mask, steps=3, top_k=4)
    e = c.energy(name, q.states, gradient=True)
    scrolled = list(c.iterate_memories(name, page_size=6))
    deleted = c.delete_many(name, ["id-3", "id-4", "nope"])
    buf = io.BytesIO()
    c.export_snapshot(name, buf)
    buf.seek(0)
    restored = c.import_snapshot(f"{name}-r", buf)
    rq = c.query(f"{name}-r", cues, top_k=1)
    dyn = c.dynamics(name, q.states[0], t_max=0.5, dt=0.01, record_every=10)
    diag = c.diagnostics(name, beta=8.0)
    return Outcome(
        bank={k: v for k, v in bank.raw.items() if k not in ("created_at", "name")},
        store_ids=stored.ids,
        states=q.states,
        energies_q=q.energies,
        match_ids=[[m.id for m in r.matches] for r in q],
        weights=np.array([[m.weight for m in r.matches] for r in q]),
        energies=e.energies,
        gradients=np.asarray(e.gradients),
        scrolled=[(m.id, m.payload) for m in scrolled],
        scrolled_vectors=np.stack([np.asarray(m.vector) for m in scrolled]),
        deleted=deleted,
        count_after=c.get_bank(name).count,
        restored_count=restored.count,
        restored_query=rq.states,
        dynamics_energy=dyn.energy,
        diag=(diag.meeting, diag.separable, diag.beta_min),
    )


def assert_same(a: Outcome, b: Outcome) -> None:
    assert a.bank == b.bank
    assert a.store_ids == b.store_ids
    assert a.match_ids == b.match_ids
    assert a.scrolled == b.scrolled
    assert (a.deleted, a.count_after, a.restored_count) == (
        b.deleted,
        b.count_after,
        b.restored_count,
    )
    for field in (
        "states",
        "energies_q",
        "weights",
        "energies",
        "gradients",
        "scrolled_vectors",
        "restored_query",
        "dynamics_energy",
    ):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-5, err_msg=field)
    assert a.diag[:2] == b.diag[:2]
    if a.diag[2] is None or b.diag[2] is None:
        assert a.diag[2] == b.diag[2]
    else:
        np.testing.assert_allclose(a.diag[2], b.diag[2], rtol=1e-5)


def test_http_and_embedded_agree(
    http_client: Client, embedded_client: Client, bank_name: str
) -> None:
    via_http = scenario(http_client, bank_name)
    via_embedded = scenario(embedded_client, bank_name)
    assert via_http.count_after == 18 and via_http.deleted == 2
    assert_same(via_http, via_embedded)


async def async_scenario(c: AsyncClient, name: str) -> dict[str, Any]:
    xi, ids, payloads, cues, mask = data()
    await c.create_bank(name, dim=16, **CONFIG)
    await c.upload(name, xi, ids=ids, payloads=payloads, batch_size=8, progress=False)
    q = await c.query(name, cues, mask=mask, steps=3, top_k=4)
    e = await c.energy(name, q.states, gradient=True)
    scrolled = [m.id async for m in c.iterate_memories(name, page_size=6)]
    deleted = await c.delete_many(name, ["id-3", "id-4", "nope"])
    count = (await c.get_bank(name)).count
    dyn = await c.dynamics(name, q.states[0], t_max=0.5, dt=0.01, record_every=10)
    assert await c.health() and await c.ready()
    return {
        "states": q.states,
        "ids": [[m.id for m in r.matches] for r in q],
        "energies": e.energies,
        "scrolled": scrolled,
        "deleted": deleted,
        "count": count,
        "dyn": dyn.energy,
    }


def sync_equivalent(c: Client, name: str) -> dict[str, Any]:
    xi, ids, payloads, cues, mask = data()
    c.create_bank(name, dim=16, **CONFIG)
    c.upload(name, xi, ids=ids, payloads=payloads, batch_size=8, progress=False)
    q = c.query(name, cues, mask=mask, steps=3, top_k=4)
    e = c.energy(name, q.states, gradient=True)
    scrolled = [m.id for m in c.iterate_memories(name, page_size=6)]
    deleted = c.delete_many(name, ["id-3", "id-4", "nope"])
    dyn = c.dynamics(name, q.states[0], t_max=0.5, dt=0.01, record_every=10)
    return {
        "states": q.states,
        "ids": [[m.id for m in r.matches] for r in q],
        "energies": e.energies,
        "scrolled": scrolled,
        "deleted": deleted,
        "count": c.get_bank(name).count,
        "dyn": dyn.energy,
    }


def _compare(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
        else:
            assert a[k] == b[k], k


def test_async_http_matches_sync(
    server: Any, write_key: str, http_client: Client, bank_name: str
) -> None:
    async def run() -> dict[str, Any]:
        async with AsyncClient(server.url, api_key=write_key) as ac:
            return await async_scenario(ac, f"{bank_name}-a")

    _compare(asyncio.run(run()), sync_equivalent(http_client, f"{bank_name}-s"))


def test_async_embedded_matches_sync(
    tmp_path: Path, embedded_client: Client, bank_name: str
) -> None:
    async def run() -> dict[str, Any]:
        async with AsyncClient(path=tmp_path / "async-embedded") as ac:
            return await async_scenario(ac, bank_name)

    _compare(asyncio.run(run()), sync_equivalent(embedded_client, bank_name))
