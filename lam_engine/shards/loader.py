"""`Storage.load`'s sink for a ShardedBank (shards/bank.py): rows buffered, routed by id."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batch import PreparedBatch
from .placement import split


class ShardedLoader:
    """`Storage.load`'s sink for a ShardedBank: rows are buffered, then routed by id."""

    def __init__(self, bank: Any) -> None:  # a ShardedBank (which imports this module)
        self.bank = bank
        self._buf = np.zeros((0, bank.config.dim), dtype=np.float32)

    def reserve(self, n: int, d: int) -> None:
        if d != self.bank.config.dim:
            # The one-bank loader's check and message (bank.BulkLoader.reserve).
            self.bank.parts[0].bulk_loader().reserve(n, d)
        self._buf = np.empty((n, d), dtype=np.float32)

    def write(self, start: int, block: np.ndarray) -> None:
        self._buf[start : start + len(block)] = block

    def finish(
        self,
        ids: list[str],
        keys: np.ndarray,
        payloads: list[dict[str, Any] | None],
        times: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        bank = self.bank
        keys = np.asarray(keys, dtype=np.int64)
        for s, pos in enumerate(split(ids, len(bank.parts))):
            if pos:
                part_ids = [ids[p] for p in pos]
                sub = PreparedBatch(part_ids, part_ids, self._buf[pos], [payloads[p] for p in pos])
                part = bank.parts[s]
                part.apply(sub, keys[pos])
                if times is not None:  # strengths and times (store schema 5)
                    rows = np.asarray([part._row_of[i] for i in part_ids], dtype=np.int64)
                    part._set_priors(rows, *(col[pos] for col in times))
        bank._align()
        self._buf = np.zeros((0, bank.config.dim), dtype=np.float32)
        bank.rebuild_indexes()
        bank._changed()
