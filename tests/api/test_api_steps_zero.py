"""`steps: 0` over HTTP (API.md, "Scoring at the cue"), against tests/reference.py."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from lam_engine import BankConfig, Engine
from tests import reference as ref
from tests.api.api_support import BETA, IDS, XI

RNG = np.random.default_rng(11)


def _post(client: TestClient, bank: str, body: dict) -> dict:
    r = client.post(f"/v1/banks/{bank}/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _check(client, bank, body, xi, ids, cue, beta) -> None:
    """The response to `body` against the oracle at the prepared cue (B, d)."""
    out = _post(client, bank, body)
    w = ref.weights(xi, cue, beta)
    e = ref.energy(xi, cue, beta)
    top_k = body.get("top_k", 5)
    for i, res in enumerate(out["results"]):
        assert res["steps"] == 0 and res["converged"] is False
        np.testing.assert_allclose(res["state"], cue[i], atol=1e-6)
        assert res["energy"] == pytest.approx(e[i], abs=1e-5)
        order = np.argsort(-w[i], kind="stable")[:top_k]
        assert [m["id"] for m in res["matches"]] == [ids[j] for j in order]
        for m in res["matches"]:
            j = ids.index(m["id"])
            assert m["weight"] == pytest.approx(w[i, j], abs=1e-5)
            assert m["score"] == pytest.approx(float(xi[j].astype(np.float64) @ cue[i]), abs=1e-5)
        r = client.post(f"/v1/banks/{bank}/energy", json={"states": [res["state"]], "beta": beta})
        assert r.status_code == 200, r.text
        assert r.json()["energies"][0] == pytest.approx(res["energy"], abs=1e-6)


def test_steps_zero_scores_at_the_cue(client: TestClient, bank: str) -> None:
    cue = np.array([[0.9, 0.2, 0.1, 0.0], [0.0, 0.3, 0.8, 0.4]])
    _check(client, bank, {"queries": cue.tolist(), "steps": 0}, XI, IDS, cue, BETA)


def test_steps_zero_with_a_mask(client: TestClient, bank: str) -> None:
    cue = np.array([[0.1, 0.0, 0.7, 99.0]])  # feature 3 unknown: ignored
    mask = [True, True, True, False]
    body = {"queries": cue.tolist(), "mask": mask, "steps": 0, "beta": 4.0, "top_k": 3}
    _check(client, bank, body, XI, IDS, np.where(mask, cue, 0.0), 4.0)


@pytest.mark.parametrize("prefilter", [None, {"kind": "flat", "k": 16, "min_size": 1}])
def test_steps_zero_on_a_normalized_bank(client: TestClient, prefilter) -> None:
    n, d, beta = 200, 8, 16.0
    xi = ref.normalize(RNG.standard_normal((n, d))).astype(np.float32)
    cfg = {"name": "nb", "dim": d, "beta": beta, "normalize": True}
    if prefilter:
        cfg["prefilter"] = {**prefilter, "tolerance": 0.5}
    assert client.post("/v1/banks", json=cfg).status_code == 201
    ids = [f"x{i}" for i in range(n)]
    mem = [{"id": i, "vector": v.tolist()} for i, v in zip(ids, xi, strict=True)]
    assert client.post("/v1/banks/nb/memories", json={"memories": mem}).status_code == 200
    q = 3.0 * (xi[:3] + 0.05 * RNG.standard_normal((3, d)))  # not unit: normalized first
    body = {"queries": q.tolist(), "steps": 0, "top_k": 4}
    if not prefilter:
        _check(client, "nb", body, xi, ids, ref.normalize(q), beta)
        return
    out = _post(client, "nb", body)
    exact = _post(client, "nb", {**body, "exact": True})
    assert out["prefiltered"] is True
    for a, b in zip(out["results"], exact["results"], strict=True):
        assert a["steps"] == 0 and a["converged"] is False and a["prefiltered"] is True
        assert a["state"] == b["state"]
        assert [m["id"] for m in a["matches"]] == [m["id"] for m in b["matches"]]
        eps = a["missed_mass_bound"]
        assert eps <= 0.5
        for ma, mb in zip(a["matches"], b["matches"], strict=True):
            assert abs(ma["weight"] - mb["weight"]) <= eps + 1e-6
            assert ma["score"] == pytest.approx(mb["score"], abs=1e-6)
    _check(client, "nb", {**body, "exact": True}, xi, ids, ref.normalize(q), beta)


def test_steps_zero_npy_body_equals_json(client: TestClient, bank: str) -> None:
    q = np.array([[0.9, 0.2, 0.1, 0.0]], dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, q)
    via_npy = client.post(
        f"/v1/banks/{bank}/query?steps=0&top_k=2",
        content=buf.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert via_npy.status_code == 200, via_npy.text
    assert via_npy.json() == _post(client, bank, {"queries": q.tolist(), "steps": 0, "top_k": 2})


def test_numpy_serialization_writes_the_same_json_as_lists() -> None:
    # The service hands vectors to orjson as arrays; the bytes must equal those of lists.
    engine = Engine.open(None)
    try:
        engine.create_bank("b", BankConfig(dim=5))
        xi = RNG.standard_normal((30, 5)).astype(np.float32)
        engine.upsert("b", xi)
        res = engine.query("b", xi[:3] * 0.7 + 0.01, with_vectors=True, top_k=3)
        as_lists = orjson.dumps(res.to_dict())
        as_arrays = orjson.dumps(res.to_dict(arrays=True), option=orjson.OPT_SERIALIZE_NUMPY)
        assert as_arrays == as_lists
    finally:
        engine.close()
