"""CPU specifics of the passes: instruction-set flags, oneDNN's float32 GEMM, its caches."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

# oneDNN (and ideep above it) cache one compiled GEMM per distinct shape, 1024 of each by
# default. A bank's row count changes with every write and the micro-batch size with every
# call, so under mixed store/query load the caches fill with ~0.5 MB entries (measured:
# +500 MB of RSS over 1000 shapes). 64 entries bound that to a few tens of MB and still
# hold every shape of a steady query load.
ONEDNN_CACHE_CAPACITY = "64"
ONEDNN_CACHE_VARS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")

# Multiply-adds below which a float32 GEMM stays with torch.mm rather than oneDNN.
_ONEDNN_MIN_MACS = 1 << 20
NATIVE_FLAGS = {
    torch.bfloat16: ("avx512_bf16", "amx_bf16"),
    torch.float16: ("avx512_fp16", "amx_fp16"),
}
# The half-dtype GEMM path pays (measured on Zen 5, oneDNN) only for passes with Ξᵀ p, at
# least this many queries and this dimension; elsewhere widening chunks to float32 is as
# fast or faster (and exact).
_HALF_MIN_BATCH = 32
_HALF_MIN_DIM = 256


def bound_onednn_caches() -> None:
    """Bound oneDNN's shape caches (see ONEDNN_CACHE_CAPACITY); an operator's values win.

    oneDNN reads the variables at its first call, so this works after `import torch` as
    long as no GEMM ran yet: `lam_engine.setup()` calls it, never an import.
    """
    for var in ONEDNN_CACHE_VARS:
        os.environ.setdefault(var, ONEDNN_CACHE_CAPACITY)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def half_gemm_ok(xi: torch.Tensor, batch: int, *, need_out: bool = True) -> bool:
    """Whether the pass multiplies in the memories' half dtype (else it widens to float32)."""
    if xi.device.type != "cpu" or xi.dtype not in NATIVE_FLAGS:
        return False
    if not need_out or batch < _HALF_MIN_BATCH or xi.shape[1] < _HALF_MIN_DIM:
        return False
    return any(flag in cpu_flags() for flag in NATIVE_FLAGS[xi.dtype])


@functools.lru_cache(maxsize=1)
def linear_op() -> Any:
    """oneDNN's GEMM, `torch.ops.mkldnn._linear_pointwise` (a @ wᵀ), if it is there and exact.

    On CPU, torch's float32 `mm` goes to MKL, which on AMD processors runs well below the
    machine's float32 rate; oneDNN reaches it (~2× on Zen). It is a private op: used only
    if it exists and reproduces a float64 product to float32 accuracy (no bf16/TF32 mode).
    """
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(3, 67, generator=gen)
        w = torch.randn(45, 67, generator=gen)
        e = torch.randn(3, 45, generator=gen)
        want_nt = a.double() @ w.double().T
        want_nn = e.double() @ w.double()
        got_nt = op(a, w, None, "none", [None], "").double()
        got_nn = op(e, w.T, None, "none", [None], "").double()
    except Exception:  # any failure: fall back to torch.mm
        return None
    ok = torch.allclose(got_nt, want_nt, rtol=1e-5, atol=1e-5) and torch.allclose(
        got_nn, want_nn, rtol=1e-5, atol=1e-5
    )
    return op if ok else None


def _onednn_for(a: torch.Tensor, w: torch.Tensor) -> Any:
    """oneDNN's GEMM for a CPU product of a (B, ·) and w (c, d), unless it is too small to
    pay for oneDNN's fixed cost per call (~10 µs)."""
    if a.device.type != "cpu" or a.shape[0] * w.shape[0] * w.shape[1] < _ONEDNN_MIN_MACS:
        return None
    if not (a.is_contiguous() and w.is_contiguous()):
        return None
    return linear_op()


def mm_nt(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """a @ wᵀ in float32: a (B, d), w (c, d) -> (B, c)."""
    op = _onednn_for(a, w)
    return op(a, w, None, "none", [None], "") if op is not None else a @ w.T


def mm_nn(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """e @ w in float32: e (B, c), w (c, d) -> (B, d)."""
    op = _onednn_for(e, w)
    return op(e, w.T, None, "none", [None], "") if op is not None else e @ w
