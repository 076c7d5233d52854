"""async_client.py is generated from client.py (lam_client/_codegen.py) and must be current."""

from __future__ import annotations

import asyncio
import inspect

import lam_client
from lam_client import _codegen
from lam_client.async_client import AsyncBackend, AsyncClient, AsyncHttpBackend
from lam_client.client import Backend, Client, HttpBackend
from lam_client.embedded import AsyncEmbeddedBackend, EmbeddedBackend


def test_async_client_is_generated() -> None:
    for pair in _codegen.PAIRS:
        assert _codegen.is_current(pair=pair), (
            f"{pair[1]} is stale: run python -m lam_client._codegen"
        )
    for _, target in _codegen.PAIRS:
        assert target.read_text().startswith(_codegen.HEADER_PREFIX)


def test_check_notices_an_edit_of_the_sync_client() -> None:
    edited = _codegen.SOURCE.read_text().replace("retries: int = 3", "retries: int = 4")
    assert edited != _codegen.SOURCE.read_text()
    assert not _codegen.is_current(edited)
    assert _codegen.main(["--check"]) == 0


def test_both_clients_have_the_same_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync, async_ = public(Client), public(AsyncClient)
    assert sync.keys() == async_.keys()
    for name, sig in sync.items():
        assert list(sig.parameters) == list(async_[name].parameters), name
        assert inspect.iscoroutinefunction(
            getattr(AsyncClient, name)
        ) or inspect.isasyncgenfunction(getattr(AsyncClient, name)), name
    assert lam_client.AsyncClient is AsyncClient


def test_backends_implement_the_protocols() -> None:
    http = HttpBackend(None, None, 1.0, 0)
    assert isinstance(http, Backend)
    http.close()
    async_http = AsyncHttpBackend(None, None, 1.0, 0)
    assert isinstance(async_http, AsyncBackend)
    asyncio.run(async_http.close())
    embedded = EmbeddedBackend(":memory:")
    try:
        assert isinstance(embedded, Backend)
    finally:
        embedded.close()
    wrapped = AsyncEmbeddedBackend(":memory:")
    try:
        assert isinstance(wrapped, AsyncBackend)
    finally:
        wrapped.inner.close()


def test_async_text_bank_is_the_generated_twin_of_text_bank() -> None:
    from lam_client.integrations._atextbank import AsyncTextBank
    from lam_client.integrations._sync_textbank import TextBank

    def own(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(fn) for name, fn in vars(cls).items() if callable(fn)}

    sync, async_ = own(TextBank), own(AsyncTextBank)
    assert sync.keys() == async_.keys() and "ids_where" in async_
    for name, sig in sync.items():
        assert list(sig.parameters) == list(async_[name].parameters), name
        if name != "__init__":
            assert inspect.iscoroutinefunction(getattr(AsyncTextBank, name)), name
    # A loop over the client's async generator is an `async for`, not an awaited call.
    source = inspect.getsource(AsyncTextBank.delete)
    assert "async for m in self.client.iterate_memories" in source
    assert "await self.client.iterate_memories" not in source
