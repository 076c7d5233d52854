"""FAISS's process-wide settings, changed only when asked (never at import)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss

from ..errors import InvalidParameterError

# FAISS computes flat inner products with a plain loop unless a search batch has at least
# this many queries (128000 in this build), and only uses BLAS above it. Measured here
# (d=384, N=1e5, k=256): B=32 takes 102 ms on the loop and 31 ms with BLAS, B=256 834 ms
# and 127 ms; B=1 is the same either way. So BLAS from the first query on.
BLAS_THRESHOLD = 1


def setup_faiss() -> None:
    """Set what the prefilter's speed relies on (BLAS from the first query); idempotent.

    Process-wide, so it is `lam_engine.setup()`'s to call, not an import's: an embedding
    program that uses FAISS itself keeps its own settings until it opens an Engine.
    """
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD


# Search batches smaller than this run on the calling thread alone. FAISS parallelizes a
# search over its queries with OpenMP; for a few queries the team's wake-up, spin-wait and
# join cost more than the work, and on shared cores far more: measured here (2 shared
# vCPUs, IVF nlist 1265, nprobe 32, N = 10⁵ × 384, k = 256), CPU per search with 1 thread
# vs 2: B = 1 0.48 vs 0.82 ms, B = 2 0.64 vs 4.9 ms, B = 4 2.0 vs 5.8 ms, B = 16 7.5 vs
# 9.2 ms (and the wall time was no better with 2 at any of these sizes).
SERIAL_SEARCH_MAX_BATCH = 32


@contextlib.contextmanager
def serial_search(batch: int) -> Iterator[None]:
    """FAISS on this thread alone for a small batch (SERIAL_SEARCH_MAX_BATCH).

    OpenMP's thread count is a per-thread setting (the calling thread's ICV), so this
    changes nothing for other threads, and it is restored on exit.
    """
    if batch >= SERIAL_SEARCH_MAX_BATCH:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def set_threads(n: int) -> None:
    """Number of OpenMP threads FAISS uses (process-wide); nothing else here changes it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError("threads must be an integer ≥ 1", {"threads": n})
    faiss.omp_set_num_threads(n)
