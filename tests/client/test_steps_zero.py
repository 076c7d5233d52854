"""`steps=0` (score at the cue) through the SDK (live server and embedded) and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lam_client import Client
from tests import reference
from tests.client.test_cli import lam_json


def test_sdk_scores_at_the_cue(client: Client, bank_name: str) -> None:
    rng = np.random.default_rng(3)
    xi = rng.standard_normal((20, 6)).astype(np.float32)
    client.create_bank(bank_name, dim=6, beta=2.0, normalize=True)
    client.store(bank_name, xi, ids=[f"m{i}" for i in range(20)])
    x = reference.normalize(xi)
    cues = 2.0 * xi[[4, 11]] + 0.2 * rng.standard_normal((2, 6)).astype(np.float32)
    res = client.query(bank_name, cues, steps=0, top_k=3)
    cue = reference.normalize(cues)
    np.testing.assert_allclose(res.states, cue, atol=1e-6)
    np.testing.assert_allclose(res.energies, reference.energy(x, cue, 2.0), atol=1e-5)
    p = reference.weights(x, cue, 2.0)
    for b, r in enumerate(res):
        assert r.steps == 0 and not r.converged
        order = np.argsort(-p[b])[:3]
        assert [m.id for m in r.matches] == [f"m{i}" for i in order]
        np.testing.assert_allclose([m.weight for m in r.matches], p[b, order], atol=1e-5)


def test_cli_steps_zero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    xi = np.eye(4, dtype=np.float32)
    lam_json(data, "bank", "create", "m", "--dim", "4", "--beta", "3")
    np.save(tmp_path / "v.npy", xi)
    lam_json(data, "load", "m", str(tmp_path / "v.npy"))
    cue = [0.8, 0.1, 0.0, 0.0]
    res = lam_json(data, "query", "m", "--vector", "[0.8, 0.1, 0.0, 0.0]", "--steps", "0")
    r = res["results"][0]
    assert r["steps"] == 0 and r["converged"] is False
    np.testing.assert_allclose(r["state"], cue, atol=1e-7)
    assert r["energy"] == pytest.approx(reference.energy(xi, np.array(cue), 3.0)[0], abs=1e-6)
