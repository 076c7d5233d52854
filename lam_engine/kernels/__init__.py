"""The fast passes of Model B over Ξ: chunked, fused (CPU flash attention), candidates.

`model_b_pass` (dispatch.py) picks the pass for a bank's device and dtype; every pass
produces log-sum-exp partials and merges them with `lam_engine.math.merge`.
"""

from .candidates import candidate_pass, gather_rows
from .chunked import chunk_rows_for
from .cpu import half_gemm_ok
from .dispatch import model_b_pass
from .result import DEFAULT_CHUNK_BYTES, PassResult

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "PassResult",
    "candidate_pass",
    "chunk_rows_for",
    "gather_rows",
    "half_gemm_ok",
    "model_b_pass",
]
