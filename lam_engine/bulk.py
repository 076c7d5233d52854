"""Rows written into a bank's tensor before they are its memories: a bulk load from the
store (the `Storage.load` sink) and an append staged while its commit runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import InvalidInputError


@dataclass(frozen=True, eq=False)
class Staged:
    """Rows [start, stop) of the tensor `xi` hold a batch's vectors (MemoryBank.stage)."""

    xi: torch.Tensor
    start: int
    stop: int

    def follows(self, xi: torch.Tensor, n: int, m: int) -> bool:
        """Whether these are the m rows right after row n of this very tensor."""
        return self.xi is xi and (self.start, self.stop) == (n, n + m)


class BulkLoader:
    """The `Storage.load` sink (storage.VectorSink) of `MemoryBank.bulk_loader`: the vectors
    go straight into the bank's device tensor, in its dtype, one chunk at a time (no full
    float32 copy of the bank on the way). The bank is a `MemoryBank` (bank.py, which
    imports this module: hence `Any`)."""

    def __init__(self, bank: Any) -> None:
        self.bank = bank
        self._rows = 0

    def reserve(self, n: int, d: int) -> None:
        bank = self.bank
        if d != bank.config.dim:
            raise InvalidInputError(
                f"stored vectors have dimension {d}, the bank has {bank.config.dim}",
                {"expected": bank.config.dim, "got": d},
            )
        # Exactly n rows: the first append after a start grows it geometrically, as usual.
        bank._reserve(n, exact=True)
        self._rows = n

    def write(self, start: int, block: np.ndarray) -> None:
        # copy_ converts to the bank's dtype and device chunk by chunk.
        self.bank._xi[start : start + len(block)].copy_(torch.from_numpy(block))

    def finish(
        self,
        ids: list[str],
        keys: np.ndarray,
        payloads: list[dict[str, Any] | None],
        times: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Make the rows written so far the bank's memories (ids, store seqs, payloads)."""
        bank, n = self.bank, len(ids)
        if n != self._rows or len(keys) != n or len(payloads) != n:
            raise InvalidInputError("bulk load: ids, keys and payloads must match the rows")
        bank._bias[:n] = 0.0
        bank._keys[:n] = keys
        bank._ids = ids  # taken over, not copied
        bank._payloads = payloads
        bank._row_of = dict(zip(ids, range(n), strict=True))
        bank._n, bank._dead = n, 0
        bank._max_norm = None
        bank.indexes.add(np.arange(n), payloads)
        if times is not None:  # strengths and times (store schema 5)
            bank._set_priors(np.arange(n), *times)
