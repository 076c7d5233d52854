"""Every SDK method against the live server and the embedded engine (parametrized `client`)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from lam_client import (
    Bank,
    Client,
    Conflict,
    InvalidInput,
    NotFound,
    QueryResponse,
    _ops,
)
from tests import reference


@pytest.fixture
def xi() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.standard_normal((12, 8)).astype(np.float32)  # (N, d)


def test_bank_lifecycle(client: Client, bank_name: str) -> None:
    bank = client.create_bank(bank_name, dim=8, beta=2.5)
    assert isinstance(bank, Bank)
    assert (bank.name, bank.dim, bank.beta, bank.model, bank.count) == (bank_name, 8, 2.5, "B", 0)
    # Same config again: idempotent; another config: 409.
    assert client.create_bank(bank_name, dim=8, beta=2.5).name == bank_name
    with pytest.raises(Conflict) as exc:
        client.create_bank(bank_name, dim=9)
    assert exc.value.status == 409 and exc.value.code == "bank_exists"
    assert bank_name in [b.name for b in client.list_banks()]
    assert client.get_bank(bank_name).dim == 8
    assert client.update_bank(bank_name, beta=4.0).beta == 4.0
    assert client.get_bank(bank_name).beta == 4.0
    client.delete_bank(bank_name)
    with pytest.raises(NotFound) as nf:
        client.get_bank(bank_name)
    assert nf.value.code == "bank_not_found"
    assert bank_name not in [b.name for b in client.list_banks()]


def test_store_get_delete_scroll(client: Client, bank_name: str, xi: np.ndarray) -> None:
    client.create_bank(bank_name, dim=8)
    ids = [f"m{i}" for i in range(12)]
    payloads = [{"i": i} if i % 2 == 0 else None for i in range(12)]
    res = client.store(bank_name, xi, ids=ids, payloads=payloads)
    assert res.ids == ids and res.count == 12
    mem = client.get(bank_name, "m4")
    assert mem.payload == {"i": 4}
    np.testing.assert_array_equal(mem.vector, xi[4])
    # Upsert: the same id replaces, the count stays.
    assert client.store(bank_name, xi[0] * 2, ids=["m0"]).count == 12
    np.testing.assert_allclose(client.get(bank_name, "m0").vector, xi[0] * 2)
    # No id: content address (sha256 of float32 LE bytes), stored once.
    auto = client.store(bank_name, np.stack([xi[1] + 1, xi[1] + 1]))
    digest = hashlib.sha256((xi[1] + 1).astype("<f4").tobytes()).hexdigest()
    assert auto.ids == [digest, digest] and auto.count == 13
    page = client.scroll(bank_name, limit=5)
    assert [m.id for m in page.memories] == ids[:5] and page.next_cursor is not None
    everything = list(client.iterate_memories(bank_name, page_size=4))
    assert [m.id for m in everything] == [*ids, digest]
    client.delete(bank_name, "m3")
    with pytest.raises(NotFound) as nf:
        client.get(bank_name, "m3")
    assert nf.value.code == "memory_not_found"
    with pytest.raises(NotFound):
        client.delete(bank_name, "m3")
    assert client.delete_many(bank_name, ["m5", "m6", "absent"]) == 2
    assert client.get_bank(bank_name).count == 10


def test_upload_in_batches(client: Client, bank_name: str) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((25, 4)).astype(np.float32)
    ids = [str(i) for i in range(25)]
    client.create_bank(bank_name, dim=4)
    res = client.upload(bank_name, vectors, ids=ids, batch_size=7, progress=False)
    assert res.ids == ids and res.count == 25
    got = np.stack([m.vector for m in client.iterate_memories(bank_name, 10)])
    np.testing.assert_array_equal(got, vectors)


def test_vectors_alone_go_as_npy_and_store_as_json_would(client: Client, bank_name: str) -> None:
    """Without ids, payloads, forgetting or a novelty gate, a store is an application/x-npy
    body (the array's own dtype); the bank then holds what a JSON body stores: float32
    rounding, content addresses, the count (the same assertions run on the embedded engine,
    which takes the array directly)."""
    rng = np.random.default_rng(5)
    x64 = rng.standard_normal((6, 4)) / 3  # float64: the server rounds to float32
    op = _ops.store(bank_name, x64, None, None)
    assert op.content_type == "application/x-npy" and isinstance(op.body, bytes)
    np.testing.assert_array_equal(np.load(io.BytesIO(op.body), allow_pickle=False), x64)
    for json_op in (_ops.store(bank_name, x64, ["a"] * 6, None),
                     _ops.store(bank_name, x64, None, None, if_novel=0.5)):  # fmt: skip
        assert json_op.content_type == "application/json" and isinstance(json_op.body, dict)
    client.create_bank(bank_name, dim=4)
    res = client.store(bank_name, x64)
    x32 = x64.astype(np.float32)
    want = [hashlib.sha256(row.astype("<f4").tobytes()).hexdigest() for row in x32]
    assert res.ids == want and res.count == 6
    np.testing.assert_array_equal(client.get(bank_name, want[3]).vector, x32[3])
    # JSON for the same vectors (an id on one of them), into a second bank: the same rows.
    other = f"{bank_name}-json"
    client.create_bank(other, dim=4)
    ids: list[str | None] = [None] * 6
    ids[0] = want[0]
    assert client.store(other, x64, ids=ids).ids == want
    got = [client.get(other, i).vector for i in want]
    np.testing.assert_array_equal(np.stack(got), x32)
    # Upload in batches takes the same path.
    assert client.upload(bank_name, x64[::-1] * 2, batch_size=4, progress=False).count == 12


def test_query_matches_numpy_reference(client: Client, bank_name: str, xi: np.ndarray) -> None:
    beta = 3.0
    client.create_bank(bank_name, dim=8, beta=beta)
    client.store(
        bank_name, xi, ids=[f"m{i}" for i in range(12)], payloads=[{"k": i} for i in range(12)]
    )
    rng = np.random.default_rng(11)
    cues = xi[[2, 9]] + 0.3 * rng.standard_normal((2, 8)).astype(np.float32)  # (2, d)
    res = client.query(bank_name, cues, top_k=3, with_vectors=True)
    assert isinstance(res, QueryResponse) and len(res) == 2
    x64 = xi.astype(np.float64)
    state, _, _ = reference.retrieve(xi, cues, beta)  # (2, d): one step
    np.testing.assert_allclose(res.states, state, rtol=1e-4, atol=1e-5)
    assert isinstance(res.states, np.ndarray) and res.states.shape == (2, 8)
    p = reference.weights(xi, state, beta)  # (2, N): weights at the returned state
    for b, r in enumerate(res):
        assert r.steps == 1
        order = np.argsort(-p[b])[:3]
        assert [m.id for m in r.matches] == [f"m{i}" for i in order]
        np.testing.assert_allclose([m.weight for m in r.matches], p[b, order], rtol=1e-4)
        np.testing.assert_allclose([m.score for m in r.matches], (x64 @ state[b])[order], rtol=1e-4)
        assert r.matches[0].payload == {"k": int(order[0])}
        np.testing.assert_array_equal(r.matches[0].vector, xi[order[0]])
    expect = reference.energy(xi, state, beta)
    np.testing.assert_allclose(res.energies, expect, rtol=1e-5, atol=1e-5)
    # A single (d,) cue is one row; β override; no payloads on request.
    one = client.query(bank_name, cues[0], beta=50.0, with_payload=False, top_k=1)
    assert len(one) == 1 and one[0].matches[0].payload is None


def test_query_mask_clamps_known_features(client: Client, bank_name: str, xi: np.ndarray) -> None:
    beta = 4.0
    client.create_bank(bank_name, dim=8, beta=beta)
    client.store(bank_name, xi)
    mask = np.array([True] * 4 + [False] * 4)
    cue = xi[5].copy()
    cue[4:] = 99.0  # unknown features: ignored whatever was sent
    r = client.query(bank_name, cue, mask=mask, steps=3, tol=0.0)[0]
    np.testing.assert_allclose(r.state[:4], xi[5, :4], rtol=1e-6)
    v, _, _ = reference.retrieve(xi, cue, beta, steps=3, tol=0.0, mask=mask)  # clamped steps
    np.testing.assert_allclose(r.state, v[0], rtol=1e-4, atol=1e-5)


def test_energy_and_gradient(client: Client, bank_name: str, xi: np.ndarray) -> None:
    beta = 1.5
    client.create_bank(bank_name, dim=8, beta=beta)
    client.store(bank_name, xi)
    v = np.random.default_rng(5).standard_normal((3, 8))
    res = client.energy(bank_name, v, gradient=True)
    np.testing.assert_allclose(res.energies, reference.energy(xi, v, beta), rtol=1e-5, atol=1e-5)
    assert res.gradients is not None and res.gradients.shape == (3, 8)
    grad = reference.gradient(xi, v, beta)
    np.testing.assert_allclose(res.gradients, grad, rtol=1e-4, atol=1e-5)
    c = client.energy(bank_name, v, beta=2 * beta, constants=True)
    expect = reference.energy(xi, v, 2 * beta, constants=True)  # + β⁻¹ log N + ½M²
    np.testing.assert_allclose(c.energies, expect, rtol=1e-5, atol=1e-5)
    assert (c.energies >= -1e-6).all()


def test_dynamics_energy_never_increases(client: Client, bank_name: str, xi: np.ndarray) -> None:
    client.create_bank(bank_name, dim=8, beta=2.0)
    client.store(bank_name, xi, ids=[f"m{i}" for i in range(12)])
    d = client.dynamics(bank_name, xi[3] + 0.1, t_max=1.0, dt=0.01, record_every=5, top_k=2)
    assert d.times[0] == 0.0 and d.times.shape == d.energy.shape and len(d.times) > 3
    assert (np.diff(d.energy) <= 1e-6).all()
    assert d.state.shape == (8,) and len(d.hidden_top) == 2
    assert d.hidden_top[0].value >= d.hidden_top[1].value


def test_diagnostics(client: Client, bank_name: str) -> None:
    client.create_bank(bank_name, dim=4)
    xi = np.eye(4, dtype=np.float32)
    client.store(bank_name, xi, ids=list("abcd"))
    d = client.diagnostics(bank_name, beta=10.0)
    assert d.count == 4 and d.M is not None and abs(d.M - 1.0) < 1e-6
    # Δ_i = 1 for orthonormal memories; threshold = 2/(βN) + β⁻¹ ln(2(N−1)NβM²).
    threshold = 2 / 40 + np.log(2 * 3 * 4 * 10) / 10
    assert d.threshold == pytest.approx(threshold, rel=1e-6)
    assert d.meeting == (4 if threshold <= 1 else 0)


def test_snapshot_round_trip(
    client: Client, bank_name: str, xi: np.ndarray, tmp_path: Path
) -> None:
    client.create_bank(bank_name, dim=8, beta=3.0)
    client.store(
        bank_name, xi, ids=[f"m{i}" for i in range(12)], payloads=[{"i": i} for i in range(12)]
    )
    path = tmp_path / "snap.zip"
    client.export_snapshot(bank_name, path)
    assert path.stat().st_size > 0 and not (tmp_path / "snap.zip.part").exists()
    copy = f"{bank_name}-copy"
    bank = client.import_snapshot(copy, path)
    assert (bank.count, bank.beta, bank.dim) == (12, 3.0, 8)
    with pytest.raises(Conflict):
        client.import_snapshot(copy, path)
    buf = io.BytesIO()
    client.export_snapshot(copy, buf)
    buf.seek(0)
    assert client.import_snapshot(copy, buf, replace=True).count == 12
    for a, b in zip(client.iterate_memories(bank_name), client.iterate_memories(copy), strict=True):
        assert (a.id, a.payload) == (b.id, b.payload)
        np.testing.assert_array_equal(a.vector, b.vector)


def test_input_errors(client: Client, bank_name: str) -> None:
    client.create_bank(bank_name, dim=3)
    with pytest.raises(Conflict) as empty:
        client.query(bank_name, [1.0, 0.0, 0.0])
    assert empty.value.code == "empty_bank" and empty.value.status == 409
    with pytest.raises(InvalidInput) as dim:
        client.store(bank_name, [[1.0, 2.0]])
    assert dim.value.status == 422 and dim.value.code == "dimension_mismatch"
    with pytest.raises(InvalidInput) as nan:
        client.store(bank_name, [[1.0, np.nan, 0.0]])
    assert nan.value.code == "non_finite"
    with pytest.raises(InvalidInput) as dup:
        client.store(bank_name, np.eye(3), ids=["a", "a", "b"])
    assert dup.value.code == "duplicate_id"
    assert client.get_bank(bank_name).count == 0  # a failed batch stores nothing
    client.store(bank_name, np.eye(3))
    with pytest.raises(InvalidInput) as beta:
        client.query(bank_name, [1.0, 0.0, 0.0], beta=-1.0)
    assert beta.value.status == 422
    with pytest.raises(NotFound):
        client.store("no-such-bank", np.eye(3))


def test_health_and_ready(client: Client) -> None:
    assert client.health() is True
    assert client.ready() is True
