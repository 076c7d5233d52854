"""A prefilter's search by FAISS alone, the reference its native searches are tested against."""

from __future__ import annotations

import numpy as np

from lam_engine.index import Prefilter
from lam_engine.kernels import native


def faiss_search(p: Prefilter, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`p.search(q, k)` with the native code switched off for the call."""
    native.set_enabled(False)
    try:
        return p.search(q, k)
    finally:
        native.set_enabled(True)
