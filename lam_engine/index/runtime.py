"""FAISS's process-wide settings, changed only when asked (never at import)."""

from __future__ import annotations

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


def set_threads(n: int) -> None:
    """Number of OpenMP threads FAISS uses (process-wide); nothing else here changes it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError("threads must be an integer ≥ 1", {"threads": n})
    faiss.omp_set_num_threads(n)
