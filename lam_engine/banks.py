"""The Bank protocol: what the engine, the table and the store ask of a bank, whatever its
layout. `MemoryBank` (bank.py: one tensor) and `ShardedBank` (shards/bank.py: K shards,
each a MemoryBank, behind a global view) both implement it, so the engine never asks which
kind it holds; `slot.new_slot` is the one place that picks one (by the config's shards),
with the matching way to read it (reads.py). mypy checks both against it (`KINDS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .bank import MemoryBank, PreparedBatch
from .clock import Clock
from .config import BankConfig
from .priors import RowPriors
from .shards import ShardedBank


@runtime_checkable
class Bank(Protocol):
    config: BankConfig  # settable: a PATCH replaces it (a sharded bank passes it on)
    clock: Clock
    device: torch.device
    texts: dict[str, str]  # id → text of a text bank's memories (texts.py)

    # ---- size and membership ----
    @property
    def count(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    def __contains__(self, memory_id: str) -> bool: ...
    def holds_any(self, memory_ids: Sequence[str]) -> bool: ...
    def seqs_of(self, memory_ids: Sequence[str]) -> dict[str, int]: ...

    # ---- writes (the engine's write protocol: prepare, commit to the store, apply) ----
    def prepare(
        self,
        vectors: Any,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        *,
        as_stored: bool = False,
        strengths: np.ndarray | None = None,
        expires: np.ndarray | None = None,
        stored_at: float = 0.0,
    ) -> PreparedBatch: ...
    def apply(self, batch: PreparedBatch, keys: list[int] | np.ndarray) -> None: ...
    def remove(self, ids: list[str]) -> list[int]: ...
    def bulk_loader(self) -> Any: ...  # the `Storage.load` sink of an empty bank

    # ---- strengths and lifetimes (priors.py) ----
    @property
    def priors(self) -> RowPriors: ...  # in the order of the bank's rows (read-only)
    @property
    def has_prior(self) -> bool: ...
    @property
    def next_expiry(self) -> float: ...
    def expired_rows(self, t: float) -> np.ndarray: ...
    def forgetting(self, memory_id: str, t: float) -> dict[str, Any] | None: ...
    def set_half_life(self, half_life_s: float | None) -> None: ...

    # ---- rows, in key (insertion) order ----
    @property
    def keys(self) -> np.ndarray: ...
    def alive_rows(self) -> np.ndarray: ...
    def alive_vectors(self) -> np.ndarray: ...
    def id_at(self, row: int) -> str: ...
    def payload_at(self, row: int) -> dict[str, Any] | None: ...
    def vector_at(self, row: int) -> np.ndarray: ...
    def get(self, memory_id: str) -> tuple[np.ndarray, dict[str, Any] | None]: ...
    def scroll(self, limit: int, after_key: int | None) -> tuple[list[int], bool]: ...

    # ---- the prefilter, as the description and diagnostics see it ----
    def index_info(self, prefilter: Any) -> dict[str, Any]: ...
    def search_index(self, prefilter: Any) -> Any: ...


KINDS: tuple[type[Bank], ...] = (MemoryBank, ShardedBank)
