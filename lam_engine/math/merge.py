"""Log-sum-exp partials of a Model B pass over a part of Ξ, and their exact merge.

A pass over memories ξ_μ (rows of one part of Ξ) for states v yields, per state, with
logits a_μ = β ξ_μ·v (+ bias):

    m = max_μ a_μ,   S = Σ_μ e^{a_μ − m},   V = Σ_μ e^{a_μ − m} ξ_μ,   top-k (score, row)

Parts merge exactly (flash-decoding's rescaling): with M = max_s m_s,

    Z = Σ_s S_s e^{m_s − M},   v′ = Σ_s V_s e^{m_s − M} / Z,   lse = M + log Z,

and the top-k of the union is the top-k of the parts' top-k. So the chunked kernel (chunk
after chunk), the fused kernel (its shards) and a sharded bank (its replicas) produce
partials and merge them here, and any split of Ξ gives the unsplit answer up to rounding.

Units: `base2=True` means m and the logits are in base 2 (a₂ = a·log₂e; the chunked kernel
emits them so its exps are exp2); S and V are the same numbers either way. A part with no
visible row has m = −inf and S = 0, and its V is ignored (it may hold garbage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_LN2 = math.log(2.0)


@dataclass
class Partials:
    """What one pass over a part of Ξ yields for states v (B, d); rows are global."""

    m: Tensor  # (B,) float32: max logit, −inf for an empty support
    s: Tensor  # (B,) float32: Σ e^{a − m}
    v: Tensor  # (B, d) float32: Σ e^{a − m} ξ; (B, 0) when Ξᵀ p is not wanted
    top_scores: Tensor  # (B, k): the k largest scores (any unit monotone in ξ·v)
    top_rows: Tensor  # (B, k) int64: their rows, −1 for none
    # Σ of the weights that summed into `v`, when they were rounded apart from `s` (a half-
    # dtype GEMM rounds e before Ξᵀ e); None: `s` normalizes `v`.
    s_v: Tensor | None = None

    @classmethod
    def empty(
        cls, b: int, d: int, k: int, *, device: torch.device, half_sum: bool = False
    ) -> Partials:
        """The merge's identity: no rows seen."""
        f32 = torch.float32
        return cls(
            m=torch.full((b,), -math.inf, dtype=f32, device=device),
            s=torch.zeros(b, dtype=f32, device=device),
            v=torch.zeros(b, d, dtype=f32, device=device),
            top_scores=torch.full((b, k), -math.inf, dtype=f32, device=device),
            top_rows=torch.full((b, k), -1, dtype=torch.int64, device=device),
            s_v=torch.zeros(b, dtype=f32, device=device) if half_sum else None,
        )

    @classmethod
    def of_softmax(cls, out: Tensor, lse: Tensor) -> Partials:
        """A part given as its normalized result (out = V/S, lse = m + log S): m = lse, S = 1.

        An empty part (lse = −inf) gets S = 0, so its `out` never counts.
        """
        b = out.shape[0]
        none_f = torch.empty(b, 0, dtype=torch.float32, device=out.device)
        none_i = torch.empty(b, 0, dtype=torch.int64, device=out.device)
        s = torch.isfinite(lse).to(torch.float32)  # (B,)
        return cls(m=lse, s=s, v=out, top_scores=none_f, top_rows=none_i)


def merge_stacked(
    m: Tensor, s: Tensor, v: Tensor, s_v: Tensor | None = None, *, base2: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The merge on S parts stacked along dim 0: m, s (S, B), v (S, B, d), s_v (S, B).

    Returns (M, Z, V, Z_v) of the union, (B,) and (B, d). `merge` is this plus the top-k;
    a pass whose parts come stacked (the fused kernel's shards) calls it directly.
    """
    exp = torch.exp2 if base2 else torch.exp
    m_all = m.amax(dim=0)  # (B,)
    # A support still empty keeps a finite reference, so exp() never sees −inf − (−inf).
    ref = torch.where(torch.isfinite(m_all), m_all, 0)
    w = exp(m - ref)  # (S, B), 0 for an empty part
    z = (w * s).sum(dim=0)  # (B,)
    z_v = None if s_v is None else (w * s_v).sum(dim=0)
    if v.shape[2]:
        # An empty part's V may be garbage (nan): its weight 0 must not make 0·nan.
        v = torch.where((w > 0)[..., None], v.float(), 0)
        v = torch.einsum("sb,sbd->bd", w, v)  # (B, d)
    else:
        v = v[0]
    return m_all, z, v, z_v


def merge(parts: Sequence[Partials], k: int = 0, *, base2: bool = False) -> Partials:
    """The partials of the union of disjoint parts of Ξ; keeps the k best scores.

    The one merge of the code base (see the module docstring): the chunked kernel folds
    its chunks into a running partial with it, the fused kernel merges its shards.
    """
    s_v = None
    if any(p.s_v is not None for p in parts):
        s_v = torch.stack([p.s if p.s_v is None else p.s_v for p in parts])
    m, s, v, z_v = merge_stacked(
        torch.stack([p.m for p in parts]),
        torch.stack([p.s for p in parts]),
        torch.stack([p.v.float() for p in parts]),
        s_v,
        base2=base2,
    )
    top_s, top_r = parts[0].top_scores, parts[0].top_rows
    if len(parts) > 1 and k > 0:
        top_s = torch.cat([p.top_scores for p in parts], dim=1)
        top_r = torch.cat([p.top_rows for p in parts], dim=1)
        top_s, idx = torch.topk(top_s, min(k, top_s.shape[1]), dim=1)
        top_r = torch.gather(top_r, 1, idx)
    return Partials(m=m, s=s, v=v, top_scores=top_s, top_rows=top_r, s_v=z_v)


def finish(p: Partials, *, base2: bool = False) -> tuple[Tensor, Tensor]:
    """(out = V/S (B, d), lse (B,)) in natural log; out = 0 and lse = −inf without support."""
    found = p.s > 0  # (B,)
    norm = p.s if p.s_v is None else p.s_v
    out = p.v
    if out.shape[1]:
        out = torch.where(found[:, None], p.v / norm.clamp_min(1e-38)[:, None], 0)
    if base2:
        lse = (p.m + torch.log2(p.s.clamp_min(1e-38))) * _LN2
    else:
        lse = p.m + torch.log(p.s.clamp_min(1e-38))
    return out, torch.where(found, lse, -math.inf)


def dense_partials(
    xi: Tensor,
    v: Tensor,
    beta: float,
    *,
    bias: Tensor | None = None,
    top_k: int = 0,
    row0: int = 0,
    need_out: bool = True,
) -> Partials:
    """Partials of one part xi (c, d) whose first row is global row `row0`, in float32.

    Top-k scores are h = ξ·v (the API's score); a row hidden by bias = −inf never counts.
    """
    x = xi.float()  # (c, d)
    h = v.to(xi.dtype).float() @ x.T  # (B, c)
    logits = beta * h
    if bias is not None:
        logits = logits + bias.float()
        h = torch.where(torch.isneginf(bias.float()), -math.inf, h)
    m = (
        logits.amax(dim=1)
        if logits.shape[1]
        else torch.full((v.shape[0],), -math.inf, device=xi.device)
    )  # (B,)
    ref = torch.where(torch.isfinite(m), m, 0)
    e = torch.exp(logits - ref[:, None])  # (B, c)
    kk = min(top_k, h.shape[1])
    top_h, idx = torch.topk(h, kk, dim=1)
    rows = torch.where(torch.isfinite(top_h), idx + row0, -1)
    v_out = e @ x if need_out else torch.empty(v.shape[0], 0, device=xi.device)
    return Partials(m=m, s=e.sum(dim=1), v=v_out, top_scores=top_h, top_rows=rows)
