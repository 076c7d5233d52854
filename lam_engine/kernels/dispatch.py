"""Model B pass: Ξᵀ softmax(β Ξ v), log Σ exp(β Ξ v) and top-k in bounded memory.

One pass over the memories computes what a retrieval step needs; `need_out=False` skips
Ξᵀ p (the last pass of a query and /energy without gradient need only the log-sum-exp and
the top-k), which halves the work.

The chunked pass (`chunked.chunked_pass`) evaluates the softmax over N memories chunk by chunk
with a running maximum and sum (the online log-sum-exp of flash-decoding). β·log₂e is
folded into the score GEMM so it emits base-2 logits directly (exp2 is ~3× faster than exp
on CPU), the chunk's top-k doubles as its maximum (found through strided group maxima,
`chunked.chunk_topk`), and the exp is done in place on a buffer small enough to stay in cache. The
top-k scores are recomputed exactly in float32 at the end from the selected rows.

* float32: the chunked pass. On CPU its GEMMs go to oneDNN (`torch.ops.mkldnn.
  _linear_pointwise`, IEEE float32), ~2× torch's `mm` (MKL) on AMD CPUs, and faster than
  the fused flash-attention kernel for B > 1 even though that one reads Ξ only once. For a
  few queries (B ≤ 16), or without oneDNN, a pass that wants Ξᵀ p and no top-k uses PyTorch's
  fused kernel for CPU (`_scaled_dot_product_flash_attention_for_cpu`), which returns the
  log-sum-exp too; it parallelizes over (batch, heads, query blocks) only, so Ξ is viewed as
  S contiguous shards (the "heads", no copy) whose partial results are merged by
  log-sum-exp (`fused.py`, merged by `math.merge`).
* bfloat16/float16 memories, by default: the chunked pass on chunks widened to float32
  (exact on the stored values; reading half the bytes, then float32 GEMMs from cache).
* bfloat16/float16 memories, passes with Ξᵀ p, B ≥ 32, d ≥ 256, on a CPU that multiplies
  the dtype natively (bfloat16: AVX512-BF16 or AMX; float16: AVX512-FP16 or AMX-FP16): the
  chunked pass with its GEMMs in the half dtype (oneDNN, ~2× its float32 rate), 5-35 %
  faster than widening there (measured on Zen 5); elsewhere it is not faster. A half-dtype
  GEMM accumulates in float32 but rounds its output (torch has no float32-output half GEMM
  on CPU), so the logits are the sum of two half-dtype GEMMs, hi = round(β₂ Ξ v) and
  lo = round(β₂ Ξ v − hi) (the second subtracts hi inside the GEMM's float32 accumulator):
  about 16 significant bits, |error| ≲ 2⁻¹⁶·|β h| plus the float32 accumulation error,
  where rounded logits alone would be off by up to 2⁻⁸·|β h| (0.03 for β = 8, h = 1; 0.2 at
  β = 50: weights off by 20 %). When the log-sum-exp is the point (top-k asked for, or no
  Ξᵀ p), the terms of the top candidates (k + a margin, re-ranked exactly) are replaced by
  exact float32 ones, so the energy and the weights of the matches are float32-exact where
  they matter. The softmax terms e and their sums are float32; Ξᵀ e is one half-dtype GEMM
  per chunk (e rounded to the dtype, float32 accumulation, the chunk's (B, d) result rounded
  to the dtype) accumulated across chunks in float32 and normalized by the sum of the
  rounded e: a convex combination of the memories within about two roundings to the dtype
  (≤ 2⁻⁷·max|out|, tested), like the fused kernel's half-dtype output (it rounds p to the
  dtype too).
* Without oneDNN (other builds), half dtypes on CPU: the fused kernel in the dtype for
  passes with Ξᵀ p and no top-k (the top-k, if any, from a separate scan), else widened
  chunks; on a GPU, widened chunks.

Precision (API.md): a float32 bank computes in float32 throughout. float16/bfloat16 banks
multiply in float32 on the stored values, or in their dtype with float32 accumulation (see
above), and accumulate the softmax in float32.
"""

from __future__ import annotations

import math

import torch

from ..math.merge import Partials, finish
from . import chunked, cpu, fused, native
from .result import DEFAULT_CHUNK_BYTES, PassResult

_LN2 = math.log(2.0)


def model_b_pass(
    xi: torch.Tensor,
    v: torch.Tensor,
    beta: float,
    *,
    bias: torch.Tensor | None = None,
    top_k: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    need_out: bool = True,
) -> PassResult:
    """One pass of Model B over memories `xi` (N, d) for states `v` (B, d).

    `bias` (N,) is a log-prior per row in nats (log-strengths, math/strengths.py): the
    logits are β ξ·v + bias, -inf hides a row (a tombstone) from the softmax and the top-k,
    and the top-k is by weight (β h + bias), its scores being h.
    With `need_out=False` the result's `out` is an empty (B, 0) tensor and the second GEMM
    (Ξᵀ p) is skipped; lse and the top-k are those of `need_out=True` (up to rounding).
    """
    n = xi.shape[0]
    k = min(top_k, n)
    with torch.no_grad():
        if native.usable(xi, v) and (res := _native_pass(xi, v, beta, bias, k, need_out)):
            return res
        if cpu.half_gemm_ok(xi, v.shape[0], need_out=need_out):
            return chunked.chunked_pass(
                xi, v, beta, bias, k, chunk_bytes, need_out=need_out, half=True
            )
        # The fused kernel takes the bias as a mask in the memories' dtype: exact for 0 / -inf
        # and in float32, not for log-strengths in a half dtype (rounded to 3 digits).
        mask_ok = bias is None or xi.dtype == torch.float32
        if need_out and mask_ok and fused.use_sdpa(xi, v) and fused.fused_wins(xi, v.shape[0]):
            if k == 0:
                return fused.sdpa_pass(xi, v, beta, bias)
            if xi.dtype != torch.float32:
                # A half-precision GEMM rounds its output: the fused kernel keeps the scores
                # in float32, the top-k comes from a separate scan refined in float32.
                res = fused.sdpa_pass(xi, v, beta, bias)
                res.top_scores, res.top_rows = chunked.topk_scan(xi, v, bias, k, chunk_bytes, beta)
                return res
        return chunked.chunked_pass(xi, v, beta, bias, k, chunk_bytes, need_out=need_out)


def _native_pass(
    xi: torch.Tensor,
    v: torch.Tensor,
    beta: float,
    bias: torch.Tensor | None,
    k: int,
    need_out: bool,
) -> PassResult | None:
    """The C pass (native.py) on base-2 logits, its top-k re-scored exactly like the others.

    None when a logit left float32 (+inf): the torch passes then give their inf/nan, which
    the callers turn into a refusal (NumericOverflowError); the C pass would lose the nan.
    """
    beta2 = beta / _LN2
    v2 = v.to(xi.dtype).float() * beta2  # the state as the memories' dtype holds it, scaled
    # The bias goes in as it is, scaled to base 2 inside the C loop: an (N,) torch op per
    # pass would wake torch's OpenMP team, whose spin-wait then takes a core from the pass.
    p = native.native_pass(xi, v2, bias, 1.0 / _LN2, k, need_out)
    if not bool(torch.all((torch.isfinite(p.m) | torch.isneginf(p.m)) & torch.isfinite(p.s))):
        return None
    acc = Partials(m=p.m, s=p.s, v=p.out, top_scores=p.top_l, top_rows=p.top_r)
    top_s, top_r = p.top_l, p.top_r
    if k > 0:
        top_s, top_r = chunked.exact_top(xi, v, p.top_l, p.top_r, k, bias, 1.0 / beta)
    out, lse = finish(acc, base2=True)
    return PassResult(out=out, lse=lse, top_scores=top_s, top_rows=top_r)
