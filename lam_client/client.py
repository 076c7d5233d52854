"""The synchronous client: `Client(url)` speaks HTTP, `Client(path=...)` runs embedded.

This module is also the source of `async_client.py`, generated from it by
`python -m lam_client._codegen` (tests/client/test_codegen.py fails when that file is stale).
So every function here is I/O except `__init__` and `__repr__` (each becomes `async def`
there, and each call of an I/O method an `await`); pure helpers live in `_core`, `_ops`
and `_files`, which both clients share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from lam_engine.config import DYNAMICS, QUERY

from . import _ops
from ._files import PathOrFile, open_binary, open_for_export
from ._ops import Op
from ._upload import batches, progress_bar
from .backend import Backend, HttpBackend
from .filters import FilterLike
from .models import (
    Bank,
    Diagnostics,
    DynamicsResult,
    EnergyResult,
    Memory,
    QueryResponse,
    ScrollPage,
    StoreResult,
)

T = TypeVar("T")


class Client:
    """LAM client. HTTP: `Client("http://127.0.0.1:8000", api_key=...)`; embedded, in-process:
    `Client(path="./data")` (or `path=":memory:"`). Both have the same methods and results,
    and `AsyncClient` has them too, awaitable.

    Errors are `lam_client.errors.LamClientError` subclasses carrying the service's code.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        *,
        path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.embedded = path is not None
        self._backend: Backend
        if path is not None:
            # Imported here so that an HTTP-only client never loads the engine's torch/faiss.
            from .embedded import EmbeddedBackend

            self._backend = EmbeddedBackend(path, device=device)
        else:
            self._backend = HttpBackend(url, api_key, timeout, retries, transport)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._backend.where})"

    def _run(self, op: Op[T]) -> T:
        return op.parse(self._backend.call(op))

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> bool:
        """True while the server process answers /healthz (always True embedded)."""
        return self._backend.health()

    def ready(self) -> bool:
        """True once every bank is loaded (/readyz 200); False on 503, without retrying."""
        return self._backend.ready()

    # ---- banks -----------------------------------------------------------------------------
    def create_bank(self, name: str, dim: int | None = None, **config: Any) -> Bank:
        """Create (or, with the same config, get) a bank; config: model, beta, normalize,
        dtype, device, prefilter (dict), model_params (dict), embedder (a text bank:
        {"model": "all-MiniLM-L6-v2"}, then dim may be left out). 409 Conflict on another
        config."""
        return self._run(_ops.create_bank(name, dim, config))

    def list_banks(self) -> list[Bank]:
        return self._run(_ops.list_banks())

    def get_bank(self, name: str) -> Bank:
        return self._run(_ops.get_bank(name))

    def update_bank(
        self,
        name: str,
        *,
        beta: float | None = None,
        prefilter: dict[str, Any] | None = None,
        payload_index: dict[str, str] | None = None,
        default_ttl_s: Any = _ops.UNSET,
        half_life_s: Any = _ops.UNSET,
    ) -> Bank:
        """Change a bank; `default_ttl_s` / `half_life_s` left out are kept, None clears."""
        forgetting = {
            k: v
            for k, v in (("default_ttl_s", default_ttl_s), ("half_life_s", half_life_s))
            if v is not _ops.UNSET
        }
        return self._run(_ops.update_bank(name, beta, prefilter, payload_index, forgetting))

    def delete_bank(self, name: str) -> None:
        self._run(_ops.delete_bank(name))

    # ---- memories --------------------------------------------------------------------------
    def store(
        self,
        bank: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        if_novel: float | None = None,
        *,
        strengths: Sequence[float | None] | None = None,
        ttl_s: Sequence[float | None] | None = None,
        expires_at: Sequence[str | None] | None = None,
    ) -> StoreResult:
        """Upsert one batch (N, d). Idempotent, so it is retried like a read.

        `if_novel=τ` stores only the memories whose energy E(ξ) is above τ, judged in
        order (API.md, "Novelty-gated store"); the others are in `result.skipped`.
        `strengths`, `ttl_s`, `expires_at`: one entry (or None) per vector (API.md
        "Forgetting")."""
        forgetting = {"strength": strengths, "ttl_s": ttl_s, "expires_at": expires_at}
        return self._run(_ops.store(bank, vectors, ids, payloads, if_novel, forgetting))

    def reinforce(self, bank: str, ids: Sequence[str], strength: float | None = None) -> int:
        """t_μ = now for the ids (and their strength, when given); returns how many."""
        return self._run(_ops.reinforce(bank, ids, strength))

    def upload(
        self,
        bank: str,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        batch_size: int = 1000,
        progress: bool = True,
        if_novel: float | None = None,
    ) -> StoreResult:
        """Store many memories in batches of `batch_size`, with a progress bar on stderr;
        `skipped` indexes (with `if_novel`) count from the first memory of all batches."""
        result = StoreResult(ids=[], count=0)
        chunks = list(batches(vectors, ids, payloads, batch_size))
        total = sum(c[0].shape[0] for c in chunks)
        with progress_bar(progress) as bar:
            task = bar.add_task(f"storing into {bank}", total=total)
            offset = 0  # position of this batch's first memory in the whole upload
            for xi, bids, bpay in chunks:
                part = self.store(bank, xi, bids, bpay, if_novel)
                result.skipped += [replace(s, index=s.index + offset) for s in part.skipped]
                result.ids += part.ids
                result.count = part.count
                offset += xi.shape[0]
                bar.advance(task, xi.shape[0])
        return result

    def store_texts(
        self,
        bank: str,
        texts: Sequence[str],
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        if_novel: float | None = None,
    ) -> StoreResult:
        """Upsert texts into a text bank: the server embeds them (its `embedder`) and keeps
        each text with its memory (`Memory.text`, `Match.text`); `if_novel` as in `store`."""
        return self._run(_ops.store_texts(bank, texts, ids, payloads, if_novel))

    def get(self, bank: str, id: str) -> Memory:
        return self._run(_ops.get_memory(bank, id))

    def delete(self, bank: str, id: str) -> None:
        self._run(_ops.delete_memory(bank, id))

    def delete_many(
        self, bank: str, ids: Sequence[str] | None = None, filter: FilterLike | None = None
    ) -> int:
        """Delete by ids or by filter (one of the two); returns how many were deleted."""
        return self._run(_ops.delete_many(bank, ids, filter))

    def scroll(
        self,
        bank: str,
        limit: int = 100,
        cursor: str | None = None,
        filter: FilterLike | None = None,
    ) -> ScrollPage:
        """A page of memories (those passing `filter`, if given) and the next cursor."""
        return self._run(_ops.scroll(bank, limit, cursor, filter))

    def count(self, bank: str, filter: FilterLike | None = None) -> int:
        """How many memories pass `filter` (all of them without one)."""
        return self._run(_ops.count(bank, filter))

    def iterate_memories(self, bank: str, page_size: int = 100) -> Iterator[Memory]:
        """Every memory of the bank in insertion order, one page at a time."""
        cursor: str | None = None
        while True:
            page = self.scroll(bank, page_size, cursor)
            yield from page.memories
            cursor = page.next_cursor
            if cursor is None:
                return

    # ---- retrieval (defaults: lam_engine.config, the one source) ---------------------------
    def query(
        self,
        bank: str,
        queries: Any,
        mask: Any = None,
        beta: float | None = None,
        steps: int = QUERY.steps,
        tol: float = QUERY.tol,
        top_k: int = QUERY.top_k,
        with_payload: bool = QUERY.with_payload,
        with_vectors: bool = QUERY.with_vectors,
        exact: bool = QUERY.exact,
        filter: FilterLike | None = None,
    ) -> QueryResponse:
        """Retrieve for (B, d) cues (or one (d,) cue); `mask` (B, d) or (d,), True = known."""
        return self._run(
            _ops.query(
                bank,
                queries,
                mask=mask,
                beta=beta,
                steps=steps,
                tol=tol,
                top_k=top_k,
                with_payload=with_payload,
                with_vectors=with_vectors,
                exact=exact,
                filter=filter,
            )
        )

    def query_texts(
        self,
        bank: str,
        texts: Sequence[str],
        beta: float | None = None,
        steps: int = QUERY.steps,
        tol: float = QUERY.tol,
        top_k: int = QUERY.top_k,
        with_payload: bool = QUERY.with_payload,
        with_vectors: bool = QUERY.with_vectors,
        exact: bool = QUERY.exact,
        filter: FilterLike | None = None,
    ) -> QueryResponse:
        """Retrieve for texts (one result per text) in a text bank; parameters as `query`."""
        return self._run(
            _ops.query_texts(
                bank, texts, beta=beta, steps=steps, tol=tol, top_k=top_k,
                with_payload=with_payload, with_vectors=with_vectors, exact=exact, filter=filter,
            )
        )  # fmt: skip

    def energy(
        self,
        bank: str,
        states: Any,
        beta: float | None = None,
        constants: bool = False,
        gradient: bool = False,
        filter: FilterLike | None = None,
    ) -> EnergyResult:
        """E(v) of (B, d) states (over the memories passing `filter`, if given)."""
        op = _ops.energy(
            bank, states, beta=beta, constants=constants, gradient=gradient, filter=filter
        )
        return self._run(op)

    def dynamics(
        self,
        bank: str,
        state: Any,
        hidden: Any = None,
        input: Any = None,
        tau_f: float = DYNAMICS.tau_f,
        tau_h: float = DYNAMICS.tau_h,
        dt: float = DYNAMICS.dt,
        t_max: float = DYNAMICS.t_max,
        record_every: int = DYNAMICS.record_every,
        tol: float = DYNAMICS.tol,
        top_k: int = DYNAMICS.top_k,
    ) -> DynamicsResult:
        """Integrate the two-layer network from `state` (d,); `hidden` (N,) and `input` (d,)
        are optional initial hidden values and a constant input current."""
        return self._run(
            _ops.dynamics(
                bank,
                state,
                hidden=hidden,
                input=input,
                tau_f=tau_f,
                tau_h=tau_h,
                dt=dt,
                t_max=t_max,
                record_every=record_every,
                tol=tol,
                top_k=top_k,
            )
        )

    def diagnostics(
        self, bank: str, beta: float | None = None, limit: int = 100, offset: int = 0
    ) -> Diagnostics:
        return self._run(_ops.diagnostics(bank, beta, limit, offset))

    # ---- snapshots -------------------------------------------------------------------------
    def export_snapshot(self, bank: str, path_or_file: PathOrFile) -> None:
        """Write the whole bank as one portable snapshot file. A path is written through
        `path.part`, renamed only when complete: a failed export leaves no file behind."""
        with open_for_export(path_or_file) as f:
            self._backend.export_snapshot(bank, f)

    def import_snapshot(self, name: str, path_or_file: PathOrFile, replace: bool = False) -> Bank:
        """Restore a snapshot into bank `name` (409 Conflict if it exists, unless replace);
        the file is streamed, never read whole into memory."""
        with open_binary(path_or_file) as f:
            return Bank.from_dict(self._backend.import_snapshot(name, f, replace))


__all__ = ["Backend", "Client", "HttpBackend"]
