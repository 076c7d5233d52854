"""Input validation and canonical forms of vectors: shapes, finiteness, normalization, ids."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import (
    DimensionMismatchError,
    EmptyBatchError,
    InvalidInputError,
    NonFiniteError,
    NumericOverflowError,
)

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
MAX_ID_LENGTH = 512
_NARROW_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


def as_matrix(values: Any, dim: int | None, what: str = "vectors") -> np.ndarray:
    """A new (B, dim) float32 C-contiguous array from a list of lists or an array; typed
    errors otherwise.

    `dim` None accepts any width (the caller compares it with the bank's later).
    """
    narrow = isinstance(values, np.ndarray) and values.dtype in _NARROW_FLOATS
    if narrow:
        # float16/32 cannot overflow float32: check and copy them as they are, not in float64.
        arr = values
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{what} must be a list of equal-length number arrays") from exc
    if arr.ndim != 2:
        if arr.size == 0:
            raise EmptyBatchError(f"{what} must not be empty")
        raise InvalidInputError(f"{what} must be a 2-D array (B × dim)", {"shape": list(arr.shape)})
    if arr.shape[0] == 0:
        raise EmptyBatchError(f"{what} must not be empty")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"{what} have dimension {arr.shape[1]}, the bank has {dim}",
            {"expected": dim, "got": int(arr.shape[1])},
        )
    finite = np.isfinite(arr)
    if not finite.all():
        rows = np.nonzero(~finite.all(axis=1))[0][:10].tolist()
        raise NonFiniteError(f"{what} contain NaN or Inf", {"rows": rows})
    if narrow:
        return np.array(arr, dtype=np.float32, order="C")  # a copy: the caller keeps its own
    with np.errstate(over="ignore"):
        f32 = arr.astype(np.float32, order="C")
    if not np.isfinite(f32).all():
        raise NonFiniteError(f"{what} overflow float32", {"max_abs": float(np.abs(arr).max())})
    return f32


def as_mask(mask: Any, batch: int, dim: int) -> np.ndarray | None:
    """A (B, dim) bool mask (true = known feature) from one row or B rows."""
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise InvalidInputError("mask must contain booleans")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] not in (1, batch):
        raise DimensionMismatchError(
            f"mask must be 1 × {dim} or {batch} × {dim}", {"shape": list(arr.shape)}
        )
    return np.broadcast_to(arr, (batch, dim)).copy()


def normalize_rows(x: np.ndarray, *, allow_zero: bool) -> np.ndarray:
    """L2-normalize rows in float64 and round once to float32 (deterministic content ids)."""
    x64 = x.astype(np.float64)
    # np.linalg.norm's own sum for real rows, without its ~10 calls of dispatch.
    norms = np.sqrt(np.add.reduce(x64 * x64, axis=1, keepdims=True))
    zero = norms[:, 0] == 0
    if zero.any() and not allow_zero:
        raise InvalidInputError(
            "cannot normalize a zero vector", {"rows": np.nonzero(zero)[0][:10].tolist()}
        )
    norms[zero] = 1.0
    return (x64 / norms).astype(np.float32)


def round_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values a bank of `dtype` actually holds (exact in float32)."""
    if dtype == "float32":
        return x
    t = torch.from_numpy(x).to(TORCH_DTYPES[dtype])
    if not torch.isfinite(t).all():
        raise NonFiniteError(f"vectors overflow {dtype}")
    return t.float().numpy()


def content_ids(x: np.ndarray, rows: Sequence[int] | None = None) -> list[str]:
    """Content address of each row of x (B, d), or of the given rows: the hex SHA-256 of the
    stored vector's little-endian float32 bytes (API.md); one buffer, no per-row copy."""
    raw = np.ascontiguousarray(x, dtype="<f4").data.cast("B")
    size = x.shape[1] * 4
    starts = range(0, x.shape[0] * size, size) if rows is None else [r * size for r in rows]
    sha256 = hashlib.sha256
    return [sha256(raw[k : k + size]).hexdigest() for k in starts]


def check_ids(ids: Sequence[Any]) -> None:
    for i in ids:
        if i is None:
            continue
        if not isinstance(i, str) or not 0 < len(i) <= MAX_ID_LENGTH:
            raise InvalidInputError(
                f"ids must be non-empty strings of at most {MAX_ID_LENGTH} characters",
                {"id": repr(i)[:80]},
            )


_NUMPY_OK = (torch.float32, torch.float64, torch.float16)  # dtypes numpy can view


def require_finite(*arrays: np.ndarray | torch.Tensor, beta: float | None = None) -> None:
    """Refuse to answer with NaN or Inf: a product β·ξ·v or ½‖v‖² beyond the float range.

    Inputs are finite (as_matrix), so a non-finite result means the request's magnitudes
    overflow the bank's arithmetic; that is the client's value out of range (422), and JSON
    could not carry the answer anyway. Arrays are tested in their own dtype (no copy);
    tensors on their device.
    """
    for arr in arrays:
        if isinstance(arr, torch.Tensor) and arr.device.type == "cpu" and arr.dtype in _NUMPY_OK:
            arr = arr.detach().numpy()  # a view; numpy tests (1, 384) in 9 µs, torch in 26
        ok = bool(torch.isfinite(arr).all()) if isinstance(arr, torch.Tensor) else None
        if ok is None:
            ok = bool(np.isfinite(np.asarray(arr)).all())
        if not ok:
            details = {} if beta is None else {"beta": beta}
            raise NumericOverflowError(
                "the result overflows the bank's float arithmetic: lower beta or rescale the "
                "vectors",
                details,
            )
