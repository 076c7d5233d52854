"""The bank table and everything that only reads it, each bank under its read lock.

`Engine` (engine.py) adds the store, the lifecycle and the write protocol on top; this
class never writes a bank, so a reader here sees a bank before or after a batch, never
half of it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from . import ops
from .errors import (
    BankNotFoundError,
    EmptyBankError,
    EmptySelectionError,
    InvalidParameterError,
    LamError,
    MemoryNotFoundError,
)
from .fading import snapshot_rows
from .filters import Filter, parse_filter
from .inputs import QueryInput
from .kernels import DEFAULT_CHUNK_BYTES
from .reads import ONE_BANK
from .results import (
    BankInfo,
    DiagnosticsResult,
    DynamicsResult,
    EnergyResult,
    MemoryRecord,
    QueryBatchResult,
)
from .selection import SelectedBank, SelectedIndex, visible
from .slot import BankSlot
from .store import snapshot as snapshot_io
from .texts import attach_texts
from .vectors import as_matrix


class BankTable:
    """Banks by name (`_banks`, changed under `_table`) and the read-side operations."""

    def __init__(self, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self._banks: dict[str, BankSlot] = {}
        self._table = threading.RLock()

    # ---- banks ----------------------------------------------------------------------------
    def _slot(self, name: str) -> BankSlot:
        slot = self._banks.get(name)
        if slot is None:
            raise BankNotFoundError(f"bank {name!r} not found", {"bank": str(name)[:80]})
        return slot

    def list_banks(self) -> list[BankInfo]:
        with self._table:
            slots = list(self._banks.values())
        out = []
        for slot in slots:
            with slot.lock.read():
                out.append(slot.info())
        return out

    def bank_info(self, name: str) -> BankInfo:
        slot = self._slot(name)
        with slot.lock.read():
            return slot.info()

    def bank_names(self) -> list[str]:
        with self._table:
            return list(self._banks)

    # ---- memories -------------------------------------------------------------------------
    def get_memory(self, name: str, memory_id: str) -> MemoryRecord:
        slot = self._slot(name)
        with slot.lock.read():
            bank = slot.bank
            t = bank.clock.now()
            vector, payload = bank.get(memory_id)
            text = bank.texts.get(memory_id)
            forgetting = bank.forgetting(memory_id, t)
            if forgetting is None:  # expired, not yet reaped: gone already
                raise MemoryNotFoundError(f"memory {memory_id!r} not found", {"id": memory_id})
        return MemoryRecord(
            id=memory_id, vector=vector, payload=payload, text=text, forgetting=forgetting
        )

    def count(self, name: str, filter: Any = None) -> int:
        """How many memories pass `filter` (all of them without one)."""
        flt = _filter(filter)
        slot = self._slot(name)
        with slot.lock.read():
            mask = visible(slot.bank, flt)
            return slot.bank.count if mask is None else int(mask.sum())

    def scroll(
        self,
        name: str,
        limit: int = 100,
        cursor: str | None = None,
        *,
        with_vectors: bool = True,
        filter: Any = None,
    ) -> tuple[list[MemoryRecord], str | None]:
        """A page of memories in store order (of those passing `filter`, if given)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidParameterError("limit must be a positive integer", {"limit": limit})
        after: int | None = None
        if cursor:
            try:
                after = int(cursor)
            except ValueError as exc:
                raise InvalidParameterError("invalid cursor", {"cursor": cursor[:80]}) from exc
        flt = _filter(filter)
        slot = self._slot(name)
        with slot.lock.read():
            bank = slot.bank
            t = bank.clock.now()
            mask = visible(bank, flt)
            if mask is None:
                rows, more = bank.scroll(limit, after)
            else:
                start = 0 if after is None else int(np.searchsorted(bank.keys, after, "right"))
                passing = np.flatnonzero(mask[start:]) + start
                rows, more = passing[:limit].tolist(), len(passing) > limit
            records = [
                MemoryRecord(
                    id=bank.id_at(r),
                    vector=bank.vector_at(r) if with_vectors else None,
                    payload=bank.payload_at(r),
                    text=bank.texts.get(bank.id_at(r)),
                    forgetting=bank.priors.fields(r, t),
                )
                for r in rows
            ]
            next_cursor = str(int(bank.keys[rows[-1]])) if more and rows else None
        return records, next_cursor

    # ---- retrieval (ops.py does the work, under the bank's read lock) ----------------------
    @contextlib.contextmanager
    def _selecting(
        self, name: str, flt: Filter | None = None, *, blocking: bool = True
    ) -> Iterator[tuple[BankSlot, np.ndarray | None]]:
        """The bank's slot under its read lock, and the rows the read sees (None: all): the
        memories alive now (not expired) that pass `flt`. EmptyBankError if it has no
        memories, EmptySelectionError if a filter passes none; LockBusy where `blocking` is
        False and a write holds or awaits the lock."""
        slot = self._slot(name)
        with slot.lock.read(blocking=blocking):
            bank = slot.bank
            mask = None if bank.count == 0 else visible(bank, flt)
            if bank.count == 0 or (flt is None and mask is not None and not mask.any()):
                raise EmptyBankError(f"bank {name!r} has no memories", {"bank": name})
            if mask is not None and not mask.any():
                raise EmptySelectionError("no memory passes the filter", {"bank": name})
            yield slot, mask

    @contextlib.contextmanager
    def _reading(self, name: str, flt: Filter | None = None) -> Iterator[tuple[BankSlot, Any]]:
        """As `_selecting`, with the bank as the read sees it (a `SelectedBank` if not all)."""
        with self._selecting(name, flt) as (slot, mask):
            yield slot, slot.bank if mask is None else SelectedBank(slot.bank, mask, name)

    def reads_little(self, name: str, q: QueryInput, limit_bytes: int) -> bool:
        """Whether `q` on bank `name` reads at most about `limit_bytes` (ops.reads_little): the
        service answers such a query on its event loop when nothing else waits. False for a
        sharded bank, a filter, or a name that holds no bank (the query then says why)."""
        try:
            slot = self._slot(name)
        except LamError:
            return False
        if slot.reads is not ONE_BANK or q.filter is not None or not slot.bank.count:
            return False
        return ops.reads_little(slot.bank, slot.prefilter, q, limit_bytes)

    def query(
        self, name: str, queries: QueryInput | Any, *, blocking: bool = True, **params: Any
    ) -> QueryBatchResult:
        """Retrieve for a batch: a validated `QueryInput`, or raw queries and keyword
        parameters (mask, beta, steps, tol, top_k, with_payload, with_vectors, exact), which
        go through `QueryInput.build` (defaults: config.QUERY). `blocking=False`: LockBusy
        (locks.py) rather than wait for a write to the bank."""
        if isinstance(queries, QueryInput):
            if params:
                raise InvalidParameterError(
                    "pass the parameters inside the QueryInput", {"fields": sorted(params)}
                )
            q = queries
        else:
            q = QueryInput.build(queries, dim=self._slot(name).config.dim, **params)
        with self._selecting(name, q.filter, blocking=blocking) as (slot, mask):
            q.check_dim(slot.config.dim)
            result = slot.reads.query(
                slot.bank, slot.prefilter, mask, q, name=name, chunk_bytes=self.chunk_bytes
            )
            return attach_texts(slot.bank, result)

    def energy(
        self,
        name: str,
        states: Any,
        *,
        beta: float | None = None,
        constants: bool = False,
        gradient: bool = False,
        filter: Any = None,
    ) -> EnergyResult:
        """E(v) of states under the bank (under the memories passing `filter`, if given)."""
        v = as_matrix(states, self._slot(name).config.dim, "states")
        flt = _filter(filter)
        with self._selecting(name, flt) as (slot, mask):
            return slot.reads.energy(
                slot.bank, mask, v, name=name, flt=flt, chunk_bytes=self.chunk_bytes,
                beta=beta, constants=constants, gradient=gradient,
            )  # fmt: skip

    def dynamics(self, name: str, state: Any, **params: Any) -> DynamicsResult:
        """Integrate eqs. (1)-(2) from `state` (parameters: ops.dynamics)."""
        with self._reading(name) as (_, bank):
            return ops.dynamics(bank, state, **params)

    def diagnostics(self, name: str, **params: Any) -> DiagnosticsResult:
        """Separation report at β (parameters: ops.diagnostics)."""
        with self._reading(name) as (slot, bank):
            index = slot.bank.search_index(slot.prefilter)
            if index is not None and bank is not slot.bank:
                index = SelectedIndex(index, slot.bank.count, bank.count)
            return ops.diagnostics(bank, index, **params)

    # ---- snapshots ------------------------------------------------------------------------
    def export_snapshot(self, name: str, fileobj: BinaryIO) -> None:
        slot = self._slot(name)
        with slot.lock.read():
            bank = slot.bank
            ids, vectors, payloads, times = snapshot_rows(bank)
            texts = [bank.texts.get(i) for i in ids] if bank.texts else None
            config, created_at = slot.config.to_dict(), slot.created_at
        snapshot_io.write_snapshot(
            fileobj,
            name=name,
            config=config,
            created_at=created_at,
            ids=ids,
            vectors=vectors,
            payloads=payloads,
            times=times,
            texts=texts,
        )


def _filter(obj: Any) -> Filter | None:
    """A parsed filter (InvalidFilterError for a malformed one)."""
    return obj if isinstance(obj, Filter) else parse_filter(obj)
