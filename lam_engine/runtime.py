"""`lam_engine.setup()`: the process-wide settings the engine relies on, made on request.

Importing lam_engine changes nothing in the host process; `Engine.open` calls `setup()`,
and so does the service at start. An embedding program that opens no Engine keeps its own
oneDNN, torch and FAISS settings.
"""

from __future__ import annotations

import torch

from .index import set_threads as set_faiss_threads
from .index import setup_faiss
from .kernels.cpu import bound_onednn_caches


def setup(*, threads: int | None = None) -> None:
    """Make the settings below; idempotent (each call sets the same values).

    * oneDNN's shape caches bounded (ONEDNN_PRIMITIVE_CACHE_CAPACITY, LRU_CACHE_CAPACITY
      set to 64 unless already set: they are read at oneDNN's first GEMM);
    * torch float32 matmul precision "highest": API.md's float32 banks compute in float32,
      never TF32 on a GPU;
    * FAISS's BLAS threshold (`index.setup_faiss`);
    * with `threads`, torch's and FAISS's thread pools sized to it.
    """
    bound_onednn_caches()
    torch.set_float32_matmul_precision("highest")
    setup_faiss()
    if threads is not None:
        set_faiss_threads(threads)
        torch.set_num_threads(threads)
