"""The CPU candidate path: numpy gather and numpy softmax agree with torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lam_engine.kernels import candidate_pass, gather_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gather_rows_equals_indexing(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    xi = torch.randn(500, 24, generator=gen).to(dtype)
    rows = torch.randint(0, 500, (3, 40), generator=gen)
    got = gather_rows(xi, rows)
    assert got.dtype == dtype and got.shape == (3, 40, 24)
    assert torch.equal(got, xi[rows])


def test_numpy_candidate_pass_equals_torch_float64_reference() -> None:
    rng = np.random.default_rng(4)
    xi_c = rng.standard_normal((4, 50, 16)).astype(np.float32)
    v = rng.standard_normal((4, 16)).astype(np.float32)
    valid = rng.random((4, 50)) < 0.8
    valid[3] = False  # a query with no valid candidate: lse -inf, zero state
    args = (torch.from_numpy(xi_c), torch.from_numpy(v), 3.0, torch.from_numpy(valid))
    out, lse, h = candidate_pass(*args)  # float32 on CPU: the numpy path
    # The torch path (it runs for any other dtype), from float64 inputs.
    out64, lse64, h64 = candidate_pass(args[0].double(), args[1].double(), 3.0, args[3])
    assert out.dtype == lse.dtype == h.dtype == torch.float32
    torch.testing.assert_close(out[:3].double(), out64[:3].double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse[:3].double(), lse64[:3].double(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h.double(), h64.double(), rtol=1e-5, atol=1e-5)
    assert torch.isneginf(lse[3]) and torch.all(out[3] == 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_candidates_score_in_float32(dtype: torch.dtype) -> None:
    """The stored half values times the state as the bank's dtype holds it, summed and kept in
    float32 (API.md's precision rule), not a half product rounded to 3 digits."""
    gen = torch.Generator().manual_seed(5)
    xi_c = torch.randn(2, 64, 384, generator=gen).to(dtype) / 20
    v = torch.randn(2, 384, generator=gen)
    valid = torch.ones(2, 64, dtype=torch.bool)
    out, lse, h = candidate_pass(xi_c, v, 32.0, valid)
    h64 = torch.einsum("bkd,bd->bk", xi_c.double(), v.to(dtype).double())
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.double(), h64, rtol=0, atol=1e-5)
    torch.testing.assert_close(lse.double(), torch.logsumexp(32.0 * h64, dim=1), rtol=0, atol=1e-4)
    p = torch.softmax(32.0 * h64, dim=1)
    torch.testing.assert_close(out.double(), torch.einsum("bk,bkd->bd", p, xi_c.double()),
                               rtol=0, atol=1e-5)  # fmt: skip
