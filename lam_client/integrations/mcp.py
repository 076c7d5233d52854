"""An MCP server that gives an agent a LAM bank as its memory (pip install 'lam[mcp]').

Tools: `remember(text, metadata)`, `recall(query, k)`, `is_familiar(text)`, `forget(ids)`.
Texts are embedded here, client-side, with the bundled all-MiniLM-L6-v2 (lam_engine.embed);
the bank is created with dim 384 and `normalize: true` when it does not exist.

    python -m lam_client.integrations.mcp --bank notes --path ./lam-data        # stdio
    python -m lam_client.integrations.mcp --bank notes --url http://127.0.0.1:8000 \\
        --transport streamable-http --port 8765                                 # HTTP /mcp

`is_familiar` is LAM's novelty signal: the energy E(v) = ½‖v‖² − β⁻¹ log Σ_μ exp(β ξ_μ·v) of
the embedded text under the bank. A text close to a stored one has E near ½ − cos, so with
the default β = 20 a stored text sits near −0.5 and an unrelated one (cosines near 0.1)
near 0.4, less at most (ln N)/β for N memories;
`threshold` (default 0, about a cosine of 0.5 to the nearest memory) separates them up
to a few thousand memories; a larger bank wants a lower one (or a larger β).
Written for the `mcp` SDK 2.x, where FastMCP is called MCPServer.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from lam_engine.embed import MINILM, Embedder, load_embedder

from ..client import Client
from ._sync_textbank import TextBank
from ._textbank import DEFAULT_BETA, BankSpec, Hit, to_payload

Transport = Literal["stdio", "streamable-http"]
DEFAULT_THRESHOLD = 0.0


class Memory(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    similarity: float = Field(description="cosine similarity to the query")
    weight: float = Field(description="share of the recall at the bank's β (softmax)")


class Remembered(BaseModel):
    id: str
    count: int = Field(description="memories in the bank after this one")


class Recalled(BaseModel):
    memories: list[Memory]
    energy: float | None = Field(description="the query's energy: high = unfamiliar")


class Familiarity(BaseModel):
    familiar: bool
    energy: float | None = Field(description="E of the text under the bank; None: empty bank")
    threshold: float
    nearest: Memory | None = None


class Forgotten(BaseModel):
    forgotten: int


def _memory(h: Hit) -> Memory:
    return Memory(id=h.id, text=h.text, metadata=h.metadata, similarity=h.score, weight=h.weight)


def text_id(text: str) -> str:
    """Remembering the same text twice keeps one memory (its metadata the latest)."""
    return "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class LamMemory:
    """The four operations, synchronous, over one bank; the MCP tools call these."""

    def __init__(
        self,
        client: Client,
        bank: str,
        *,
        embedder: Embedder | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        beta: float = DEFAULT_BETA,
    ) -> None:
        self.client = client
        self.embedder = embedder if embedder is not None else load_embedder(MINILM)
        self.threshold = threshold
        self.bank = TextBank(client, BankSpec(bank, beta=beta, normalize=True))
        self.bank.ensure(self.embedder.dim)
        if self.bank.dim != self.embedder.dim:
            raise ValueError(
                f"bank {bank!r} has dim {self.bank.dim}, the embedder {self.embedder.dim}"
            )

    def remember(self, text: str, metadata: dict[str, Any] | None = None) -> Remembered:
        if not text.strip():
            raise ValueError("text is empty")
        mid = text_id(text)
        self.bank.add(self.embedder.embed([text]), [mid], [to_payload(text, metadata)])
        return Remembered(id=mid, count=self.client.get_bank(self.bank.name).count)

    def recall(self, query: str, k: int = 5) -> Recalled:
        if k < 1:
            raise ValueError("k must be at least 1")
        found = self.bank.search(self.embedder.embed([query])[0], k)
        if found is None:
            return Recalled(memories=[], energy=None)
        return Recalled(memories=[_memory(h) for h in found.hits], energy=found.energy)

    def is_familiar(self, text: str) -> Familiarity:
        v = self.embedder.embed([text])[0]
        energy = self.bank.energy(v)
        if energy is None:
            return Familiarity(familiar=False, energy=None, threshold=self.threshold)
        found = self.bank.search(v, 1)
        nearest = _memory(found.hits[0]) if found is not None and found.hits else None
        return Familiarity(
            familiar=energy <= self.threshold,
            energy=energy,
            threshold=self.threshold,
            nearest=nearest,
        )

    def forget(self, ids: Sequence[str]) -> Forgotten:
        return Forgotten(forgotten=self.bank.delete(list(ids)))


def build_server(memory: LamMemory, name: str = "lam-memory") -> MCPServer:
    """An MCPServer with the four tools. Each runs in a worker thread: embedding and the
    engine are blocking calls that must not stall the server's event loop."""
    server = MCPServer(
        name,
        instructions=(
            "A long-term associative memory. remember() stores a text (with optional "
            "metadata); recall() finds the stored texts closest in meaning to a query; "
            "is_familiar() tells whether something like a text is already stored (low "
            "energy = familiar); forget() deletes memories by id."
        ),
    )

    @server.tool()
    async def remember(text: str, metadata: dict[str, Any] | None = None) -> Remembered:
        """Store a text in memory (the same text again updates its metadata)."""
        return await anyio.to_thread.run_sync(memory.remember, text, metadata)

    @server.tool()
    async def recall(query: str, k: int = 5) -> Recalled:
        """The k stored texts closest in meaning to the query, best first."""
        return await anyio.to_thread.run_sync(memory.recall, query, k)

    @server.tool()
    async def is_familiar(text: str) -> Familiarity:
        """Whether something like this text is already in memory (its energy ≤ threshold)."""
        return await anyio.to_thread.run_sync(memory.is_familiar, text)

    @server.tool()
    async def forget(ids: list[str]) -> Forgotten:
        """Delete memories by id (unknown ids are ignored); returns how many went."""
        return await anyio.to_thread.run_sync(memory.forget, ids)

    return server


def serve(
    bank: str,
    url: str | None = None,
    path: str | None = None,
    transport: Transport = "stdio",
    *,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    threshold: float = DEFAULT_THRESHOLD,
) -> None:
    """Serve `bank` (of the LAM server at `url`, or embedded at `path`) over MCP until the
    transport closes. The model is loaded before the first message, not on the first call."""
    client = Client(path=path) if path is not None else Client(url, api_key=api_key)
    try:
        server = build_server(LamMemory(client, bank, threshold=threshold))
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m lam_client.integrations.mcp --bank NAME (--url U | --path DIR)`; the CLI's
    `lam mcp` is meant to call this."""
    p = argparse.ArgumentParser(prog="lam mcp", description="Serve a LAM bank over MCP.")
    p.add_argument("--bank", required=True, help="bank name (created with dim 384 if missing)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="LAM server (default: LAM_URL or :8000)")
    where.add_argument("--path", default=None, help="data directory: embedded, no server")
    p.add_argument("--api-key", default=None)
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    a = p.parse_args(argv)
    serve(
        a.bank,
        a.url,
        a.path,
        a.transport,
        api_key=a.api_key,
        host=a.host,
        port=a.port,
        threshold=a.threshold,
    )


if __name__ == "__main__":
    main()
