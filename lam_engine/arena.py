"""Room for a CPU bank's rows to grow into without copying them: one reserved mapping.

A bank's memories are one (capacity, d) tensor that doubles when it fills (bank.py). Grown
the plain way, every doubling allocates a new tensor and copies each row into it: at
10⁵ × 384 float32 the last copy moves 200 MB (150-320 ms measured during a bulk store,
beyond the commit it overlaps), the old tensor still allocated meanwhile. Measured with
this module, 200 000 × 384 over HTTP, FULL, alternated with the plain growth: 1-7 %
faster in four pairs of four; peak RSS for a 135 000-row bank (207 MB of rows, just past
a doubling) 342 → 320 MB. Here a CPU bank past `MIN_BYTES` gets an anonymous
private mapping reserved once (`MAP_NORESERVE`: address space only; a page takes memory
when first written, as a fresh tensor's do), sized for the machine's physical memory, and
each later doubling is a longer view of that same mapping: no copy, no second copy of the
rows resident. Readers holding the shorter view still read the same memory (they stop at
the bank's row count).

The mapping is advised for transparent huge pages (`MADV_HUGEPAGE`; this machine's THP
mode is `madvise`, so nothing else gets them): a pass streams the rows, and with 2 MiB
pages the hardware prefetcher is not stopped at every 4 KiB boundary and the TLB covers the
bank. Measured with the native steps-0 pass, same rows in a 4 KiB and an advised mapping,
30 alternated pairs: 57 863 × 384 float32 2.48 → 2.20 ms (2 threads, 22/30 pairs faster),
3.87 → 3.67 ms (1 thread, 30/30); 10⁵ × 384 5.38 → 5.06 ms (25/30), 6.65 → 6.20 ms
(26/30). A page then takes memory 2 MiB at a time, which a bank past `MIN_BYTES` does not
notice; where THP is off (`never`) or the kernel refuses the advice, pages stay 4 KiB.

Where the mapping cannot be made (a strict overcommit policy, `vm.overcommit_memory = 2`,
or no such flag on this platform), or a bank outgrows it, growth copies as before.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sys

import torch

# Below this a bank grows by copying: a copy that small costs little, and a reservation per
# tiny bank (tests make thousands) is not worth it.
MIN_BYTES = 16 << 20
# Linux's MAP_NORESERVE (asm-generic/mman-common.h); Python's mmap module does not name it.
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)

_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)

log = logging.getLogger("lam.engine")


def _physical_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0


class RowArena:
    """One reserved mapping; `rows` views its start as a (rows, d) tensor."""

    def __init__(self, nbytes: int) -> None:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        self._map = mmap.mmap(-1, nbytes, flags=flags)
        if _MADV_HUGEPAGE is not None:
            # A kernel built without THP refuses: 4 KiB pages, nothing else changes.
            with contextlib.suppress(OSError):
                self._map.madvise(_MADV_HUGEPAGE)
        self.nbytes = nbytes
        self.base = torch.frombuffer(self._map, dtype=torch.uint8, count=1).data_ptr()

    def rows(self, n: int, dim: int, dtype: torch.dtype) -> torch.Tensor | None:
        """The first n rows as a tensor (it keeps the mapping alive); None if they do not fit."""
        count = n * dim
        if count * dtype.itemsize > self.nbytes:
            return None
        return torch.frombuffer(self._map, dtype=dtype, count=count).view(n, dim)


def grow(
    old: torch.Tensor, n: int, capacity: int, arena: RowArena | None
) -> tuple[torch.Tensor, RowArena | None]:
    """A (capacity, d) CPU tensor whose first n rows are `old`'s, and the arena behind it.

    A longer view of `arena` when `old` is its view and the rows fit (no copy); else the
    rows are copied into a new arena (past MIN_BYTES, where one can be made) or tensor.
    """
    dim, dtype = old.shape[1], old.dtype
    if arena is not None and old.data_ptr() == arena.base:
        longer = arena.rows(capacity, dim, dtype)
        if longer is not None:
            return longer, arena
    fresh: torch.Tensor | None = None
    need = capacity * dim * old.element_size()
    if need >= MIN_BYTES and _MAP_NORESERVE:
        try:
            arena = RowArena(max(2 * need, _physical_bytes()))
            fresh = arena.rows(capacity, dim, dtype)
        except (OSError, ValueError, OverflowError) as exc:  # ENOMEM under strict overcommit
            log.info("bank growth copies its rows (no reserved mapping: %s)", exc)
    if fresh is None:
        arena, fresh = None, torch.empty(capacity, dim, dtype=dtype)
    fresh[:n] = old[:n]
    return fresh, arena
