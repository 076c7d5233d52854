"""Embedded mode: the same operations run in-process on `lam_engine.Engine`.

Results go through the engine's `to_dict()` (API.md's JSON shapes) and then the same parsers
as HTTP answers; engine errors become the same LamClientError subclasses and codes that the
service would send, with the status the service would use (`LamError.status`).
`AsyncEmbeddedBackend` runs the same calls in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lam_engine import Engine, PrefilterConfig
from lam_engine.errors import LamError
from lam_engine.texts import text_bank_config

from ._ops import Op
from .errors import LamClientError, error_for


def map_error(exc: LamError) -> LamClientError:
    # The status lives on the error family (lam_engine/errors.py), as the service reads it.
    return error_for(exc.status, exc.code, exc.message, exc.details)


@contextlib.contextmanager
def lam_errors() -> Iterator[None]:
    try:
        yield
    except LamError as exc:
        raise map_error(exc) from exc


def _create_bank(e: Engine, name: str, config: dict[str, Any]) -> Any:
    cfg = {k: v for k, v in config.items() if k != "name"}
    # As the service: a text bank may leave dim out, normalize defaults to true for it.
    info, _created = e.create_bank(name, text_bank_config(cfg))
    return info.to_dict()


def _update_bank(
    e: Engine,
    name: str,
    beta: Any,
    prefilter: Any,
    payload_index: Any = None,
    forgetting: Any = None,
) -> Any:
    pf = None if prefilter is None else PrefilterConfig.from_dict(prefilter)
    info = e.update_bank(
        name, beta=beta, prefilter=pf, payload_index=payload_index, **(forgetting or {})
    )
    return info.to_dict()


def _store(
    e: Engine,
    bank: str,
    vectors: Any,
    ids: Any,
    payloads: Any,
    if_novel: float | None = None,
    forgetting: Any = None,
) -> Any:
    extra = {("strengths" if k == "strength" else k): v for k, v in (forgetting or {}).items()}
    return e.upsert(bank, vectors, ids, payloads, if_novel=if_novel, **extra).to_dict()


def _scroll(e: Engine, bank: str, limit: int, cursor: str | None, filter: Any = None) -> Any:
    records, next_cursor = e.scroll(bank, limit=limit, cursor=cursor, filter=filter)
    return {"memories": [r.to_dict() for r in records], "next_cursor": next_cursor}


def _text_ops() -> Any:
    from lam_engine import text_ops

    return text_ops


def _kw(args: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in drop}


_DISPATCH: dict[str, Callable[..., Any]] = {
    "create_bank": _create_bank,
    "list_banks": lambda e: {"banks": [b.to_dict() for b in e.list_banks()]},
    "get_bank": lambda e, name: e.bank_info(name).to_dict(),
    "update_bank": _update_bank,
    "delete_bank": lambda e, name: e.delete_bank(name),
    "store": _store,
    "reinforce": lambda e, bank, ids, strength: {"reinforced": e.reinforce(bank, ids, strength)},
    "store_texts": lambda e, bank, texts, ids, payloads, if_novel=None: (
        _text_ops().store_texts(e, bank, texts, ids, payloads, if_novel=if_novel).to_dict()
    ),
    "query_texts": lambda e, bank, texts, **kw: (
        _text_ops().query_texts(e, bank, texts, **kw).to_dict()
    ),
    "get": lambda e, bank, id: e.get_memory(bank, id).to_dict(),
    "delete": lambda e, bank, id: e.delete_memory(bank, id),
    "delete_many": lambda e, bank, ids=None, filter=None: {
        "deleted": e.delete_memories(bank, ids, filter=filter)
    },
    "count": lambda e, bank, filter: {"count": e.count(bank, filter)},
    "scroll": _scroll,
    "query": lambda e, bank, queries, **kw: e.query(bank, queries, **kw).to_dict(),
    "energy": lambda e, bank, states, **kw: e.energy(bank, states, **kw).to_dict(),
    "dynamics": lambda e, bank, state, **kw: e.dynamics(bank, state, **kw).to_dict(),
    "diagnostics": lambda e, bank, **kw: e.diagnostics(bank, **kw).to_dict(),
}


class EmbeddedBackend:
    """Runs Ops on an in-process Engine opened at `path` (":memory:" keeps nothing on disk)."""

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto") -> None:
        target = None if str(path) == ":memory:" else Path(path)
        with lam_errors():
            self.engine = Engine.open(target, default_device=device)
        self.path = str(path)
        self.where = f"path={self.path!r}"

    def call(self, op: Op[Any]) -> Any:
        with lam_errors():
            return _DISPATCH[op.name](self.engine, **op.args)

    def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None:
        with lam_errors():
            self.engine.export_snapshot(bank, fileobj)

    def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any:
        with lam_errors():
            return self.engine.import_snapshot(name, fileobj, replace=replace).to_dict()

    def health(self) -> bool:
        return True  # no process to lose: the engine is this one

    def ready(self) -> bool:
        return True  # Engine.open returns once every bank is loaded

    def close(self) -> None:
        self.engine.close()


class AsyncEmbeddedBackend:
    """The embedded backend for AsyncClient: each engine call in a worker thread, so the
    event loop never blocks on the math or the disk."""

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto") -> None:
        self.inner = EmbeddedBackend(path, device=device)
        self.where = self.inner.where

    async def call(self, op: Op[Any]) -> Any:
        return await asyncio.to_thread(self.inner.call, op)

    async def export_snapshot(self, bank: str, fileobj: BinaryIO) -> None:
        await asyncio.to_thread(self.inner.export_snapshot, bank, fileobj)

    async def import_snapshot(self, name: str, fileobj: BinaryIO, replace: bool) -> Any:
        return await asyncio.to_thread(self.inner.import_snapshot, name, fileobj, replace)

    async def health(self) -> bool:
        return self.inner.health()

    async def ready(self) -> bool:
        return self.inner.ready()

    async def close(self) -> None:
        self.inner.close()
