"""Query, energy, dynamics and diagnostics over HTTP, checked against numpy references."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests import reference as ref
from tests.api.api_support import BETA, IDS, XI, ClientFactory, assert_error


def test_query_one_step_matches_numpy_reference(client: TestClient, bank: str) -> None:
    cue = np.array([0.9, 0.2, 0.1, 0.0])
    r = client.post(f"/v1/banks/{bank}/query", json={"queries": [cue.tolist()]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prefiltered"] is False and len(body["results"]) == 1
    res = body["results"][0]
    state = ref.step(XI, cue, BETA)[0]  # defaults: the bank's β, steps = 1
    assert np.allclose(res["state"], state, atol=1e-5)
    assert res["steps"] == 1
    assert res["energy"] == pytest.approx(ref.energy(XI, state, BETA)[0], abs=1e-5)
    weights = ref.weights(XI, state, BETA)[0]
    order = np.argsort(-weights)
    assert [m["id"] for m in res["matches"]] == [IDS[i] for i in order]  # top_k 5 ≥ N
    for m in res["matches"]:
        i = IDS.index(m["id"])
        assert m["weight"] == pytest.approx(weights[i], abs=1e-5)
        assert m["score"] == pytest.approx(float(XI[i] @ state), abs=1e-5)
        assert m["payload"] == {"i": i} and "vector" not in m


def test_query_parameters(client: TestClient, bank: str) -> None:
    cue = [0.9, 0.2, 0.1, 0.0]
    body = {"queries": [cue, [0.0, 0.1, 1.0, 0.0]], "beta": 8.0, "steps": 3, "top_k": 1,
            "with_payload": False, "with_vectors": True, "exact": True}  # fmt: skip
    r = client.post(f"/v1/banks/{bank}/query", json=body).json()["results"]
    assert [res["matches"][0]["id"] for res in r] == ["a", "c"]
    for res in r:
        assert len(res["matches"]) == 1 and "payload" not in res["matches"][0]
        assert len(res["matches"][0]["vector"]) == 4
        assert 1 <= res["steps"] <= 3
    r0 = client.post(f"/v1/banks/{bank}/query", json={"queries": [cue], "top_k": 0}).json()
    assert r0["results"][0]["matches"] == []


def test_query_mask_clamps_known_features(client: TestClient, bank: str) -> None:
    cue = [0.0, 0.0, 0.7, 99.0]  # feature 3 unknown: whatever was sent there is ignored
    mask = [True, True, True, False]
    res = client.post(
        f"/v1/banks/{bank}/query", json={"queries": [cue], "mask": mask, "beta": 4.0}
    ).json()["results"][0]
    assert res["state"][:3] == pytest.approx(cue[:3])
    known = np.array([0.0, 0.0, 0.7, 0.0])
    assert res["state"][3] == pytest.approx(ref.step(XI, known, 4.0)[0, 3], abs=1e-5)


def test_query_npy_body_equals_json(client: TestClient, bank: str) -> None:
    q = np.array([[0.9, 0.2, 0.1, 0.0], [0.1, 0.1, 0.1, 0.9]], dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, q)
    via_npy = client.post(
        f"/v1/banks/{bank}/query?top_k=2&beta=3.5&with_payload=false",
        content=buf.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert via_npy.status_code == 200, via_npy.text
    via_json = client.post(
        f"/v1/banks/{bank}/query",
        json={"queries": q.tolist(), "top_k": 2, "beta": 3.5, "with_payload": False},
    )
    assert via_npy.json() == via_json.json()
    bad = client.post(
        f"/v1/banks/{bank}/query?top_k=-1",
        content=buf.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert_error(bad, 422, "validation_error")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"queries": [[1.0, 0.0]]}, "dimension_mismatch"),
        ({"queries": []}, "empty_batch"),
        ({"queries": [[1, 0, 0, 0]], "beta": 0}, "validation_error"),
        ({"queries": [[1, 0, 0, 0]], "beta": -2.5}, "validation_error"),
        ({"queries": [[1, 0, 0, 0]], "steps": -1}, "validation_error"),
        ({"queries": [[1, 0, 0, 0]], "top_k": -1}, "validation_error"),
        ({"queries": [[1, 0, 0, 0]], "mask": [True, False]}, None),
        ({"queries": [[1, 0, 0, 0]], "mask": [1, 0, 1, 0]}, None),
        ({"queries": [["1", 0, 0, 0]]}, None),
        ({"queries": [[1e39, 0, 0, 0]]}, "non_finite"),
        ({"queries": [[1, 0, 0, 0]], "colour": 1}, "validation_error"),
        ({}, "validation_error"),
    ],
)
def test_query_bad_input_is_422(
    client: TestClient, bank: str, body: dict, code: str | None
) -> None:
    assert_error(client.post(f"/v1/banks/{bank}/query", json=body), 422, code)


@pytest.mark.parametrize(
    "raw", [b'{"queries": [[NaN, 1, 0, 0]]}', b'{"queries": [[Infinity, 1, 0, 0]]}']
)
def test_query_nan_tokens_are_422(client: TestClient, bank: str, raw: bytes) -> None:
    r = client.post(
        f"/v1/banks/{bank}/query", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "non_finite")


def test_empty_bank_is_409_for_query_energy_dynamics(client: TestClient) -> None:
    client.post("/v1/banks", json={"name": "e", "dim": 2})
    v = [1.0, 0.0]
    assert_error(client.post("/v1/banks/e/query", json={"queries": [v]}), 409, "empty_bank")
    assert_error(client.post("/v1/banks/e/energy", json={"states": [v]}), 409, "empty_bank")
    assert_error(client.post("/v1/banks/e/dynamics", json={"state": v}), 409, "empty_bank")


def test_unknown_bank_is_404_everywhere(client: TestClient) -> None:
    v = [1.0, 0.0]
    for path, body in (("query", {"queries": [v]}), ("energy", {"states": [v]}),
                       ("dynamics", {"state": v})):  # fmt: skip
        assert_error(client.post(f"/v1/banks/nope/{path}", json=body), 404, "bank_not_found")
    assert_error(client.get("/v1/banks/nope/diagnostics"), 404, "bank_not_found")


def test_query_batch_limit_is_413(make_client: ClientFactory) -> None:
    from tests.api.api_support import make_bank

    c = make_client(max_query_batch=2)
    make_bank(c)
    three = {"queries": [[1.0, 0, 0, 0]] * 3}
    err = assert_error(c.post("/v1/banks/m/query", json=three), 413, "batch_too_large")
    assert "2" in err["message"]
    assert_error(c.post("/v1/banks/m/energy", json={"states": three["queries"]}), 413)


def test_energy_matches_closed_form_and_query_energy(client: TestClient, bank: str) -> None:
    states = [[0.9, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]]
    r = client.post(f"/v1/banks/{bank}/energy", json={"states": states, "gradient": True})
    assert r.status_code == 200
    body = r.json()
    for v, e, g in zip(states, body["energies"], body["gradients"], strict=True):
        va = np.asarray(v)
        assert e == pytest.approx(ref.energy(XI, va, BETA)[0], abs=1e-5)
        assert np.allclose(g, va - ref.step(XI, va, BETA)[0], atol=1e-5)  # ∇E = v − Ξᵀ p
    assert (
        "gradients" not in client.post(f"/v1/banks/{bank}/energy", json={"states": states}).json()
    )
    # /energy of a returned state equals the query's reported energy (API.md).
    res = client.post(f"/v1/banks/{bank}/query", json={"queries": states[:1]}).json()["results"][0]
    e = client.post(f"/v1/banks/{bank}/energy", json={"states": [res["state"]]}).json()
    assert e["energies"][0] == pytest.approx(res["energy"], abs=1e-5)
    # With constants: + β⁻¹ log N + ½ M², so E ≥ 0.
    c = client.post(f"/v1/banks/{bank}/energy", json={"states": states, "constants": True}).json()
    m2 = float((np.linalg.norm(XI, axis=1) ** 2).max())
    for plain, const in zip(body["energies"], c["energies"], strict=True):
        assert const == pytest.approx(plain + np.log(len(IDS)) / BETA + 0.5 * m2, abs=1e-5)
        assert const >= -1e-6
    assert_error(client.post(f"/v1/banks/{bank}/energy", json={"states": [[1, 2]]}), 422)
    assert_error(
        client.post(f"/v1/banks/{bank}/energy", json={"states": [[1, 2, 3, 4]], "beta": 0}), 422
    )


def test_dynamics_energy_never_increases(client: TestClient, bank: str) -> None:
    body = {"state": [0.9, 0.2, 0.1, 0.0], "dt": 0.01, "t_max": 1.0, "record_every": 10}
    r = client.post(f"/v1/banks/{bank}/dynamics", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["times"][0] == 0.0 and d["times"][-1] == pytest.approx(1.0)
    assert len(d["times"]) == len(d["energy"])
    assert all(b <= a + 1e-6 for a, b in zip(d["energy"], d["energy"][1:], strict=False))
    assert len(d["state"]) == 4 and isinstance(d["converged"], bool)
    assert len(d["hidden_top"]) == min(5, len(IDS))
    assert d["hidden_top"][0]["id"] == "a"
    values = [h["value"] for h in d["hidden_top"]]
    assert values == sorted(values, reverse=True)


def test_dynamics_limits(make_client: ClientFactory) -> None:
    from tests.api.api_support import make_bank

    c = make_client(max_dynamics_steps=50)
    make_bank(c)
    ok = c.post("/v1/banks/m/dynamics", json={"state": [1, 0, 0, 0], "dt": 0.1, "t_max": 5.0})
    assert ok.status_code == 200, ok.text
    too_long = {"state": [1, 0, 0, 0], "dt": 0.01, "t_max": 5.0}  # 500 steps > 50
    assert_error(c.post("/v1/banks/m/dynamics", json=too_long), 422)
    for bad in (
        {"state": [1, 0]},
        {"state": [1, 0, 0, 0], "dt": 0},
        {"state": [1, 0, 0, 0], "tau_f": -1},
    ):
        assert_error(c.post("/v1/banks/m/dynamics", json=bad), 422)


def test_diagnostics(client: TestClient, bank: str) -> None:
    r = client.get(f"/v1/banks/{bank}/diagnostics", params={"beta": 50.0, "limit": 2})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["count"] == len(IDS) and d["beta"] == 50.0
    assert d["M"] == pytest.approx(float(np.linalg.norm(XI, axis=1).max()))
    assert len(d["failing"]) <= 2 and d["method"] in ("exact", "index")
    assert d["meeting"] + d["failing_total"] == d["count"]
    for params in ({"beta": 0}, {"limit": 0}, {"limit": 1001}, {"offset": -1}, {"beta": "x"}):
        assert_error(
            client.get(f"/v1/banks/{bank}/diagnostics", params=params), 422, "validation_error"
        )
