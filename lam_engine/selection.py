"""A bank seen through a filter: the memories that pass, as if the bank held only those.

API.md ("Filters"): a filtered query or energy behaves exactly as if the bank held only the
passing memories. `SelectedBank` is that bank. ops and retrieval read a bank only through
`MemoryBank`'s read interface (xi, bias, count, max_norm, alive rows, ids, keys), so
`SelectedBank` overrides exactly that interface and the passes run unchanged:

* a small selection (≤ GATHER_FRACTION of the rows) is gathered into its own tensor: the
  pass then costs O(selected), not O(bank);
* a large one keeps the bank's tensor and hides the other rows by a -inf bias (the kernels'
  log-prior, as for tombstones), so they never enter the softmax, the state, the top-k or
  the energy, and no copy of the bank is made.

Either way count is N selected and max_norm is M over the selected (energy with constants).
`SelectedIndex` widens the prefilter's search so that enough selected candidates come back
(post-filter); the certificate stays sound (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .bank import MemoryBank
from .errors import EmptySelectionError, InvalidParameterError
from .filters import Filter, evaluate, parse_filter
from .kernels.candidates import gather_rows
from .math.strengths import log_mass
from .payload_index import PayloadIndexes

GATHER_FRACTION = 0.25
# The widened prefilter search asks at most this many times the configured k.
MAX_WIDEN = 16


class BankView:
    """The `PayloadView` (filters.py) of a bank: its rows, ids, payloads and indexes."""

    def __init__(self, bank: MemoryBank) -> None:
        self._bank = bank

    @property
    def ids(self) -> Sequence[str | None]:
        return self._bank._ids

    @property
    def alive(self) -> np.ndarray:
        bias = self._bank.bias
        n = len(self._bank._ids)
        if bias is None:  # no tombstones
            return np.ones(n, dtype=bool)
        return np.asarray((~torch.isneginf(bias)).cpu().numpy(), dtype=bool)

    @property
    def indexes(self) -> PayloadIndexes | None:
        return self._bank.indexes

    def payload(self, row: int) -> dict[str, Any] | None:
        return self._bank._payloads[row]

    def row_of(self, memory_id: str) -> int | None:
        return self._bank._row_of.get(memory_id)


def select(bank: MemoryBank, flt: Filter | None) -> np.ndarray:
    """(n_rows,) bool: the alive rows of `bank` that pass `flt` (all alive rows for None)."""
    return evaluate(flt, BankView(bank))


def visible(bank: MemoryBank, flt: Filter | None) -> np.ndarray | None:
    """(n_rows,) bool: the rows a read sees now, alive, not expired (API.md "Forgetting":
    gone from the instant they expire, before the reaper deletes them) and passing `flt`;
    None when that is every memory of the bank (no filter, nothing expired: the fast path).
    """
    expired = bank.expired_rows(bank.clock.now())
    if flt is None and not len(expired):
        return None
    mask = select(bank, flt)
    mask[expired] = False
    return mask


def passing_ids(bank: MemoryBank, flt: Filter) -> list[str]:
    """The ids of the memories passing `flt` (and not expired), in store order."""
    mask = visible(bank, flt)
    assert mask is not None
    return [bank.id_at(int(r)) for r in np.flatnonzero(mask)]


def delete_filter(ids: Any, filter: Any) -> Filter | None:
    """Check a delete's arguments (exactly one of ids and filter); the filter, parsed."""
    if (ids is None) == (filter is None):
        raise InvalidParameterError("give exactly one of ids and filter")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise InvalidParameterError("ids must be a list of strings")
    return (
        None if filter is None else (filter if isinstance(filter, Filter) else parse_filter(filter))
    )


def rebuild_indexes(bank: MemoryBank) -> None:
    """Index the bank's rows anew from its config's `payload_index` (after a PATCH)."""
    indexes = PayloadIndexes(bank.config.payload_index)
    rows = bank.alive_rows()
    indexes.add(rows, [bank._payloads[int(r)] for r in rows])
    bank.indexes = indexes


class SelectedBank(MemoryBank):
    """The passing memories of `base` as a read-only bank (see module docstring).

    It does not call MemoryBank.__init__: it owns no storage of its own beyond the gathered
    rows, and only the read interface below is meaningful (writes are never made to it).
    """

    def __init__(self, base: MemoryBank, mask: np.ndarray, name: str = "") -> None:
        sel = np.flatnonzero(mask).astype(np.int64)
        if len(sel) == 0:
            raise EmptySelectionError("no memory passes the filter", {"bank": name} if name else {})
        self.config, self.device, self.dtype = base.config, base.device, base.dtype
        self._base, self._sel, self._count = base, sel, len(sel)
        self._max_norm = None
        self._sel_max_norm: float | None = None
        if len(sel) <= GATHER_FRACTION * len(mask):
            self._gathered = True
            # gather_rows: on CPU a numpy take (torch's index_select runs an OpenMP team,
            # ~5× slower for 10⁴ rows of a 10⁶ bank on the shared machine, measured).
            rows = torch.from_numpy(sel)[None].to(base.device)
            self._rows_xi = gather_rows(base.xi, rows).reshape(len(sel), base.xi.shape[1])
            # The passing memories' log-priors (strengths) come along; none: all s = 1.
            self._sel_bias: torch.Tensor | None = (
                None if base.bias is None else base.bias[torch.from_numpy(sel).to(base.device)]
            )
            self._sel_keys = base.keys[sel]
        else:
            self._gathered = False
            self._rows_xi = base.xi
            bias = torch.full((len(mask),), -math.inf, dtype=torch.float32)
            bias[torch.from_numpy(sel)] = 0.0
            self._sel_bias = bias.to(base.device)
            if base.bias is not None:  # keep the passing rows' log-priors
                idx = torch.from_numpy(sel).to(base.device)
                self._sel_bias[idx] = base.bias[idx]
            self._sel_keys = base.keys

    def _base_row(self, row: int) -> int:
        return int(self._sel[row]) if self._gathered else int(row)

    @property
    def count(self) -> int:
        return self._count

    @property
    def xi(self) -> torch.Tensor:
        return self._rows_xi

    @property
    def bias(self) -> torch.Tensor | None:
        return self._sel_bias

    @property
    def keys(self) -> np.ndarray:
        return self._sel_keys

    def alive_rows(self) -> np.ndarray:
        return np.arange(self._count, dtype=np.int64) if self._gathered else self._sel

    def alive_xi(self) -> torch.Tensor:
        if self._gathered:
            return self._rows_xi
        return self._rows_xi.index_select(0, torch.from_numpy(self._sel).to(self.device))

    @property
    def has_prior(self) -> bool:
        return self._base.priors.active

    def bias_offset(self) -> float:
        return self._base.bias_offset()

    def log_mass(self) -> float:
        """log Σ s_μ(now) over the selected memories (log N selected when all s = 1)."""
        pr = self._base.priors
        if not pr.active:
            return math.log(self._count)
        return log_mass(pr.log_prior[self._sel], self.bias_offset())

    def alive_bias(self) -> torch.Tensor | None:
        pr = self._base.priors
        if not pr.active:
            return None
        return torch.from_numpy(pr.log_prior[self._sel] + self.bias_offset()).to(self.device)

    def max_norm(self) -> float:
        """M over the selected memories (the energy's ½M² constant runs over the subset)."""
        if self._sel_max_norm is None:
            self._sel_max_norm = float(self.alive_xi().float().norm(dim=1).max())
        return self._sel_max_norm

    def id_at(self, row: int) -> str:
        return self._base.id_at(self._base_row(row))

    def payload_at(self, row: int) -> dict[str, Any] | None:
        return self._base.payload_at(self._base_row(row))

    def vector_at(self, row: int) -> np.ndarray:
        return self._base.vector_at(self._base_row(row))

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        """Rows of this view for index keys; -1 for keys gone or not selected."""
        rows = self._base.rows_for_keys(keys)
        if self._gathered:
            pos = np.searchsorted(self._sel, rows)
            pos_c = np.clip(pos, 0, len(self._sel) - 1)
            return np.where((rows >= 0) & (self._sel[pos_c] == rows), pos_c, -1)
        assert self._sel_bias is not None
        passing = np.zeros(len(self._sel_keys), dtype=bool)
        passing[self._sel] = True
        return np.where((rows >= 0) & passing[np.clip(rows, 0, None)], rows, -1)


class SelectedIndex:
    """A bank's prefilter index searched for a selection (a post-filter of its candidates).

    The search asks for k·(alive / selected) candidates (at most MAX_WIDEN·k and the bank's
    size), so that about k selected ones come back; SelectedBank.rows_for_keys drops the
    others. The certificate (math/bound.py) stays sound over the selection: the candidates
    are the top-k' of the whole bank, so every selected memory left out scores at most the
    k'-th score, which is at most the smallest score of a selected candidate, and the bound
    counts N selected minus the selected candidates. When few selected candidates come
    back the bound is loose and the query falls back to the exact pass over the selection.
    """

    def __init__(self, index: Any, n_alive: int, n_selected: int) -> None:
        self._index = index
        self._n_alive = n_alive
        self._widen = n_alive / max(1, n_selected)

    @property
    def exact_topk(self) -> bool:
        return bool(self._index.exact_topk)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        wide = min(self._n_alive, math.ceil(k * min(self._widen, MAX_WIDEN)))
        return self._index.search(queries, max(k, wide))
