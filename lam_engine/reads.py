"""How a bank answers query and energy: the one-bank passes (ops.py) or the router over its
shards (shards/ops.py). A slot is given one when it is made (slot.new_slot, from the
config's shard count), so the table reads every bank the same way and never asks which
kind it holds.

`mask` is the read's selection over the bank's rows (selection.visible: alive, not
expired, passing the filter; None: every memory); `SelectedBank` over it is built only by
a read that runs the one-bank code on it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from . import ops
from .bank import MemoryBank
from .filters import Filter
from .inputs import QueryInput
from .results import EnergyResult, QueryBatchResult
from .selection import SelectedBank, SelectedIndex
from .shards import ShardedBank
from .shards import ops as shard_ops


class Reads(Protocol):
    def query(
        self,
        bank: Any,
        prefilter: Any,
        mask: np.ndarray | None,
        q: QueryInput,
        *,
        name: str,
        chunk_bytes: int,
    ) -> QueryBatchResult: ...

    def energy(
        self,
        bank: Any,
        mask: np.ndarray | None,
        v: np.ndarray,
        *,
        name: str,
        flt: Filter | None,
        chunk_bytes: int,
        **params: Any,
    ) -> EnergyResult: ...


class OneBankReads:
    """A `MemoryBank`: its passes over the selection, the prefilter post-filtered."""

    def query(
        self,
        bank: MemoryBank,
        prefilter: Any,
        mask: np.ndarray | None,
        q: QueryInput,
        *,
        name: str,
        chunk_bytes: int,
    ) -> QueryBatchResult:
        if mask is None:
            return ops.query(bank, prefilter, q, chunk_bytes=chunk_bytes)
        view = SelectedBank(bank, mask, name)
        if prefilter is not None:
            prefilter = SelectedIndex(prefilter, bank.count, view.count)
        return ops.query(view, prefilter, q, chunk_bytes=chunk_bytes)

    def energy(
        self,
        bank: MemoryBank,
        mask: np.ndarray | None,
        v: np.ndarray,
        *,
        name: str,
        flt: Filter | None,
        chunk_bytes: int,
        **params: Any,
    ) -> EnergyResult:
        view = bank if mask is None else SelectedBank(bank, mask, name)
        return ops.energy(view, v, chunk_bytes=chunk_bytes, **params)


class ShardedReads:
    """A `ShardedBank`: one pass per shard, merged (each shard applies the selection)."""

    def query(
        self,
        bank: ShardedBank,
        prefilter: Any,
        mask: np.ndarray | None,
        q: QueryInput,
        *,
        name: str,
        chunk_bytes: int,
    ) -> QueryBatchResult:
        return shard_ops.query(bank, q, name=name, chunk_bytes=chunk_bytes)

    def energy(
        self,
        bank: ShardedBank,
        mask: np.ndarray | None,
        v: np.ndarray,
        *,
        name: str,
        flt: Filter | None,
        chunk_bytes: int,
        **params: Any,
    ) -> EnergyResult:
        return shard_ops.energy(
            bank, v, name=name, filter=flt, chunk_bytes=chunk_bytes, mask=mask, **params
        )


ONE_BANK = OneBankReads()
SHARDED = ShardedReads()
