"""Int8 codes of a flat index's memories, for the certified native search (csrc/lam_sq8.c).

Row i keeps codes c_i = round(ξ_i / a_i) ∈ [−127, 127]^d with a_i = max_j |ξ_ij| / 127, and
two norms that the search's bound needs, both rounded up to float32 so that it stays a
bound: err_i ≥ ‖ξ_i − a_i c_i‖ plus an allowance of (d + 8)·2⁻²² ‖ξ_i‖ for the float32
rounding of the exact score and of the approximate one (≥ 4× the worst case of a sum of d
products), and nrm_i ≥ ‖a_i c_i‖. They are computed in float64 from the float32 vectors, in
C (`lam_sq8_encode`; numpy took ≈ 0.8 s per 10⁵ × 384 rows on one core). Where the library
cannot be built there are no codes (`valid` false) and FAISS searches.
The codes follow the index row for row: appended on add, compacted as FAISS compacts on
remove, so row r of the codes is row r of the FAISS index. They are laid out in blocks of
16 rows, four dimensions of each row per 64 bytes (the layout csrc/lam_sq8.c reads):
`blocks[r // 16, j, r % 16, t]` is code 4 j + t of row r.
"""

from __future__ import annotations

import numpy as np

from ..kernels import native
from ..kernels.native import Sq8Rows

CODE_MAX = 127
ROWS = 16  # rows per block


def padded_dim(dim: int) -> int:
    """The codes' row length: the search reads four dimensions at a time."""
    return -(-dim // 4) * 4


class Sq8Codes:
    """The codes of an index's rows, in its row order, grown by doubling."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._dp = padded_dim(dim)
        self._n = 0
        self._blocks = np.zeros((0, self._dp // 4, ROWS, 4), dtype=np.int8)
        self._scale = np.zeros(0, dtype=np.float32)
        self._err = np.zeros(0, dtype=np.float32)
        self._nrm = np.zeros(0, dtype=np.float32)
        self.valid = True  # false once a row could not be encoded: the codes are never used

    def __len__(self) -> int:
        return self._n

    def _write(self, start: int, codes: np.ndarray) -> None:
        """Rows start … start + len(codes) − 1 of the blocks from row-major codes (c, dp)."""
        rows = np.arange(start, start + codes.shape[0])
        by_row = self._blocks.transpose(0, 2, 1, 3)  # (blocks, 16, dp/4, 4), a view
        by_row[rows // ROWS, rows % ROWS] = codes.reshape(-1, self._dp // 4, 4)

    def _row_major(self) -> np.ndarray:
        """(n, dp) int8: the codes row by row (a copy)."""
        by_row = self._blocks.transpose(0, 2, 1, 3).reshape(-1, self._dp)
        return by_row[: self._n]

    def _ensure(self, n_rows: int) -> None:
        blocks = -(-n_rows // ROWS)
        if blocks <= self._blocks.shape[0]:
            return
        cap = max(blocks, 2 * self._blocks.shape[0], 64)
        used = -(-self._n // ROWS)
        grown = np.zeros((cap, *self._blocks.shape[1:]), dtype=np.int8)
        grown[:used] = self._blocks[:used]
        self._blocks = grown
        for name in ("_scale", "_err", "_nrm"):
            old = getattr(self, name)
            new = np.zeros(cap * ROWS, dtype=np.float32)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def append(self, vectors: np.ndarray) -> None:
        """Codes for rows added at the end of the index."""
        n_new = self._n + vectors.shape[0]
        self._ensure(n_new)
        if self.valid and not native.sq8_encode(
            vectors, self._n, self._blocks, self._scale, self._err, self._nrm
        ):
            self.valid = False
        self._n = n_new

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where `mask` (n,) is false, keeping the others' order."""
        codes = self._row_major()[mask]
        n_keep = codes.shape[0]
        for arr in (self._scale, self._err, self._nrm):
            arr[:n_keep] = arr[: self._n][mask]
            arr[n_keep : self._n] = 0.0
        self._blocks[:] = 0
        self._n = n_keep
        self._write(0, codes)

    def rows(self, exact: np.ndarray) -> Sq8Rows:
        """The search's view, with `exact` (n, d) float32 the index's own rows."""
        if exact.shape != (self._n, self._dim):
            raise ValueError(f"{exact.shape} exact rows for {self._n} codes of dim {self._dim}")
        return Sq8Rows(self._blocks, self._scale, self._err, self._nrm, exact)
