"""The chunked pass: an online softmax over Ξ chunk by chunk, in bounded memory.

Each chunk yields its log-sum-exp partials (`math.merge.Partials`: max logit, Σ e, Σ e·ξ,
top-k) on base-2 logits (exp2 is ~3× faster than exp on CPU), folded into a running
partial by `math.merge.merge`; see `dispatch.py` for when this pass runs and its precision.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..math.merge import Partials, finish, merge
from . import cpu
from .candidates import gather_rows
from .result import DEFAULT_CHUNK_BYTES, PassResult

# Per (query, memory) pair the chunked pass holds a few temporaries (float32 logits and
# exp; half-dtype hi, lo and rounded exp; top-k scratch): at most this many bytes.
_BYTES_PER_PAIR = 16
# Elements of the (B, rows) logits per chunk: a few MiB, so the in-place softmax passes run
# from cache, yet large enough that a GEMM chunk amortizes the per-chunk Python overhead.
_CHUNK_PAIRS = 1 << 19
# Rows of Ξ per chunk for small (memory-bound) batches: the chunk is read twice (scores,
# then Ξᵀ p); the second read should hit the last-level cache.
_CHUNK_XI_BYTES = 8 << 20
_SMALL_BATCH = 16
# Half-dtype chunks widened to float32 (no native half GEMM): bound the widened copy.
_WIDEN_BYTES = 16 << 20
# Extra top-k candidates kept by the half-dtype path, re-ranked exactly in float32.
_TOP_MARGIN = 3
# Chunk top-k by strided group maxima (see chunk_topk): groups per row, and the fewest
# groups per wanted element for it to pay (torch.topk is fast on rows ≥ 64·k long).
TOPK_GROUPS = 16
_TOPK_MIN_GROUPS_PER_K = 64
_LN2 = math.log(2.0)
# Chunks whose partials are merged at once (see chunked_pass).
_MERGE_EVERY = 8


def chunk_rows_for(
    batch: int,
    n: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    row_bytes: int = 0,
    xi_bytes: int | None = None,
) -> int:
    """Rows of Ξ per chunk of the chunked pass.

    Bounded by `chunk_bytes` for the (B, rows) temporaries (the memory guarantee), by a
    cache-sized number of (query, memory) pairs, and, when `row_bytes` (bytes of one
    memory) is given, by `xi_bytes` of Ξ per chunk (default: a cache-sized slice for small
    batches, no bound for larger ones).
    """
    rows = min(chunk_bytes // max(1, batch * _BYTES_PER_PAIR), _CHUNK_PAIRS // max(1, batch))
    if xi_bytes is None:
        xi_bytes = _CHUNK_XI_BYTES if batch < _SMALL_BATCH else 0
    if row_bytes > 0 and xi_bytes > 0:
        rows = min(rows, max(xi_bytes // row_bytes, 4096))
    rows = rows // 256 * 256  # whole groups for chunk_topk
    return int(max(256, min(n, rows)))


def chunked_pass(
    xi: torch.Tensor,
    v: torch.Tensor,
    beta: float,
    bias: torch.Tensor | None,
    k: int,
    chunk_bytes: int,
    *,
    need_out: bool = True,
    half: bool = False,
) -> PassResult:
    """Online-softmax pass, accumulated in float32.

    `half`: the GEMMs run in the memories' half dtype (split logits, see `dispatch.py`);
    otherwise in float32, half-dtype chunks being widened first.
    """
    n, d = xi.shape
    b = v.shape[0]
    device = xi.device
    f32 = torch.float32
    # Logits in base 2 (β₂ = β·log₂e): exp2 is ~3× faster than exp on CPU.
    beta2 = beta / _LN2
    half = half and xi.dtype != f32
    widen = not half and xi.dtype != f32
    v_st = v.to(xi.dtype)  # the state as the memories' dtype holds it
    # The bias is a log-prior in nats (log-strengths, -inf for hidden rows): base 2 here.
    bias2 = None if bias is None else bias * (1.0 / _LN2)
    if half:
        v_gemm = v_st.contiguous()
        # Candidates: a margin for the exact re-ranking, and (when the log-sum-exp is what
        # the caller wants, i.e. top-k asked for or no Ξᵀ p) for refining the sum.
        kk = min(n, k + _TOP_MARGIN) if k > 0 or not need_out else 0
    else:
        # β folded into the queries: the score GEMM emits logits directly.
        v_gemm = v_st.to(f32) * beta2  # (B, d)
        kk = k
    # Ξ per chunk: a widened copy is bounded; a chunk read only once (float32, no Ξᵀ p)
    # needs no cache-sized bound (default: cache-sized for small batches).
    xi_bytes = None
    if widen:
        xi_bytes = _WIDEN_BYTES if b >= _SMALL_BATCH else None
    elif not need_out and not half:
        xi_bytes = 0
    rows = chunk_rows_for(b, n, chunk_bytes, d * (4 if widen else xi.element_size()), xi_bytes)
    # The running partials; top-k is tracked on logits (monotone in h since β > 0) and made
    # exact at the end; (half) s_v sums the rounded exp that weighted Ξᵀ e.
    acc = Partials.empty(b, d if need_out else 0, kk, device=device, half_sum=half and need_out)
    no_top = (acc.top_scores, acc.top_rows)
    # Chunks' partials wait and merge a few at a time: one merge costs about as much as a
    # chunk-sized handful of small ops, so merging every chunk alone would add ~10 % at
    # B = 8; the waiting (B, d) sums stay a small fraction of the chunk budget.
    every = int(max(1, min(_MERGE_EVERY, chunk_bytes // (8 * 4 * b * max(d, 1)))))
    pending: list[Partials] = []
    for start in range(0, n, rows):
        xc = xi[start : start + rows]  # (c, d)
        if half:
            xt = xc.T
            hi = torch.addmm(_zero(xi.dtype), v_gemm, xt, beta=0, alpha=beta2)  # round(β₂h)
            lo = torch.addmm(hi, v_gemm, xt, beta=-1, alpha=beta2)  # round(β₂h - hi)
            logits = hi.to(f32).add_(lo)  # (B, c)
            del hi, lo
        else:
            if widen:
                xc = xc.to(f32)
            logits = cpu.mm_nt(v_gemm, xc)  # (B, c)
        if bias2 is not None:
            logits.add_(bias2[start : start + rows])
        if kk > 0:
            cl, cr = chunk_topk(logits, min(kk, logits.shape[1]))
            c_max = cl[:, 0]  # the chunk's top-1 is its maximum: no extra reduction
            top = (cl, cr + start)
        else:
            c_max = logits.amax(dim=1)
            top = no_top
        # A chunk wholly hidden keeps a finite reference so exp() never sees nan.
        c_ref = torch.where(torch.isfinite(c_max), c_max, 0)
        e = logits.sub_(c_ref[:, None]).exp2_()  # (B, c), in place
        part = Partials(c_max, e.sum(dim=1), acc.v[:, :0], top[0], top[1])
        if need_out:
            if half:
                e_h = e.to(xi.dtype)
                part.v = e_h @ xc  # (B, d) in the dtype, float32 accumulation
                part.s_v = e_h.sum(dim=1, dtype=f32)
            else:
                part.v = cpu.mm_nn(e, xc)
        pending.append(part)
        if len(pending) == every:
            acc = merge([acc, *pending], kk, base2=True)
            pending.clear()
    if pending:
        acc = merge([acc, *pending], kk, base2=True)
    top_l, top_r = acc.top_scores, acc.top_rows
    if kk == 0:
        top_s = top_l
    else:
        h_c = _exact_scores(xi, v, top_l, top_r)  # (B, kk)
        if half:
            # The candidates' terms of the sum, from the split logits, replaced by exact ones.
            ref = torch.where(torch.isfinite(acc.m), acc.m, 0)[:, None]
            found = torch.isfinite(top_l)
            exact = h_c * beta2 if bias2 is None else h_c * beta2 + bias2[top_r.clamp_min(0)]
            fix = torch.exp2(exact - ref) - torch.exp2(top_l - ref)
            acc.s = acc.s + torch.where(found, fix, 0).sum(dim=1)
        top_s, top_r = _best(h_c, top_r, k, None if bias is None else bias / beta)
    out, lse = finish(acc, base2=True)
    return PassResult(out=out, lse=lse, top_scores=top_s, top_rows=top_r)


def chunk_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(logits, k, dim=1) (values descending, indices), exactly, but faster for
    long rows.

    torch.topk scans every element with scalar code; a vectorized max over G strided groups
    of a row ({j, j + c/G, j + 2c/G, ...}) is ~10× cheaper per element. The k largest
    elements lie in the k groups with the largest maxima (a group holding one of them has
    its maximum ≥ the k-th largest value, and at most k groups can), so topk runs on the
    c/G group maxima and then on the k·G members of the winning groups only.
    """
    b, c = logits.shape
    g = TOPK_GROUPS
    if c % g or c // g < _TOPK_MIN_GROUPS_PER_K * k:
        return torch.topk(logits, k, dim=1)
    cg = c // g
    group_max = logits.view(b, g, cg).amax(dim=1)  # (B, c/G)
    _, gi = torch.topk(group_max, k, dim=1)  # (B, k) winning groups
    members = (gi[:, :, None] + _group_offsets(g, cg, logits.device)).reshape(b, k * g)
    vals, pos = torch.topk(torch.gather(logits, 1, members), k, dim=1)
    return vals, torch.gather(members, 1, pos)


@functools.lru_cache(maxsize=16)
def _group_offsets(g: int, cg: int, device: torch.device) -> torch.Tensor:
    return torch.arange(g, device=device).mul_(cg).view(1, 1, g)


@functools.lru_cache(maxsize=4)
def _zero(dtype: torch.dtype) -> torch.Tensor:
    """A (1, 1) zero: the ignored addend of addmm(beta=0) (broadcast, never written)."""
    return torch.zeros(1, 1, dtype=dtype)


def topk_scan(
    xi: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    k: int,
    chunk_bytes: int,
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of h = Ξ v by a GEMM scan in the memories' dtype, made exact in float32.

    The dtype's rounding of h can reorder near-ties, so a margin of extra candidates is
    kept and re-ranked by their exact scores.
    """
    n, d = xi.shape
    b = v.shape[0]
    kk = min(n, 2 * k + 8)
    v_c = v.to(xi.dtype)
    top_h = torch.full((b, kk), -math.inf, dtype=torch.float32, device=xi.device)
    top_r = torch.full((b, kk), -1, dtype=torch.int64, device=xi.device)
    rows = chunk_rows_for(b, n, chunk_bytes, d * xi.element_size())
    for start in range(0, n, rows):
        h = (v_c @ xi[start : start + rows].T).float()  # (B, c)
        if bias is not None:  # ranked by β h + bias, i.e. by h + bias/β
            h.add_(bias[start : start + rows] / beta)
        ch, cr = torch.topk(h, min(kk, h.shape[1]), dim=1)
        top_h, idx = torch.topk(torch.cat([top_h, ch], dim=1), kk, dim=1)
        top_r = torch.gather(torch.cat([top_r, cr + start], dim=1), 1, idx)
    return exact_top(xi, v, top_h, top_r, k, None if bias is None else bias / beta)


def exact_top(
    xi: torch.Tensor,
    v: torch.Tensor,
    top_l: torch.Tensor,
    top_r: torch.Tensor,
    k: int,
    rank_bias: torch.Tensor | None = None,
    rank_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the candidates by h = ξ·v in float32 (of the stored values), descending.

    Candidates with a -inf key are hidden or padding: they come back as (-inf, -1).
    `rank_bias`·`rank_scale` is read at the candidates' rows only (the native pass passes
    the bank's bias and 1/β rather than an (N,) bias/β per query).
    """
    if top_r.shape[1] == 0:
        return top_l, top_r
    return _best(_exact_scores(xi, v, top_l, top_r), top_r, k, rank_bias, rank_scale)


def _exact_scores(
    xi: torch.Tensor, v: torch.Tensor, cand_l: torch.Tensor, cand_r: torch.Tensor
) -> torch.Tensor:
    """h = ξ·v in float32 (of the stored values) for the candidates; -inf where the key is."""
    found = torch.isfinite(cand_l)
    rows = torch.where(found, cand_r, 0)
    v_f = v.to(xi.dtype).float()
    xi_sel = gather_rows(xi, rows).float()  # (B, kk, d); on CPU a numpy take
    if xi.device.type == "cpu":
        # numpy, not torch.bmm: after a parallel op torch's OpenMP team spin-waits, and on
        # two cores it took one from the native pass of the next call (B = 8, N = 10⁵:
        # 9.7 ms for the pass alone, 16.7 with a bmm here after each, 10.2 with this).
        h = torch.from_numpy(np.einsum("bkd,bd->bk", xi_sel.numpy(), v_f.numpy()))
    else:
        # bmm, not einsum: the same product, without einsum's per-call equation parsing
        # (~40 µs, a third of a small bank's whole query).
        h = torch.bmm(xi_sel, v_f[:, :, None])[:, :, 0]
    return torch.where(found, h, -math.inf)


def _best(
    h: torch.Tensor,
    cand_r: torch.Tensor,
    k: int,
    rank_bias: torch.Tensor | None = None,
    rank_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best candidates by exact score h (+ `rank_bias` = bias/β: by weight), their
    scores h descending by weight, and their rows (-1: none)."""
    if rank_bias is None:
        h, order = torch.topk(h, k, dim=1)
    else:
        key = h + rank_bias[cand_r.clamp_min(0)] * rank_scale
        _, order = torch.topk(torch.where(torch.isfinite(h), key, -math.inf), k, dim=1)
        h = torch.gather(h, 1, order)
    rows = torch.gather(cand_r, 1, order)
    return h, torch.where(torch.isfinite(h), rows, -1)
