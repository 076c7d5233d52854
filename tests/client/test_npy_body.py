"""The SDK's .npy body (lam_client._ops.npy_bytes): the bytes np.save writes, read back
by numpy as the same array."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lam_client._ops import npy_bytes


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int32]),
        shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=40),
    )
)
def test_npy_body_is_what_np_save_writes(x: np.ndarray) -> None:
    ref = io.BytesIO()
    np.save(ref, x, allow_pickle=False)
    body = npy_bytes(x)
    assert body == ref.getvalue()
    np.testing.assert_array_equal(np.load(io.BytesIO(body), allow_pickle=False), x)


def test_a_strided_view_is_written_as_its_values() -> None:
    x = np.arange(60, dtype=np.float32).reshape(6, 10)[::2, 1::3]  # not contiguous
    got = np.load(io.BytesIO(npy_bytes(x)), allow_pickle=False)
    np.testing.assert_array_equal(got, x)
