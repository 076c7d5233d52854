"""A validated upsert batch (`PreparedBatch`) and its preparation, shared by every bank."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import BankConfig
from .errors import DuplicateIdError, InvalidInputError
from .vectors import as_matrix, check_ids, content_ids, normalize_rows, round_to_dtype


@dataclass
class PreparedBatch:
    """A validated upsert: the vectors exactly as stored, ids resolved, duplicates merged."""

    ids: list[str]  # one per input row (content ids may repeat)
    unique_ids: list[str]
    vectors: np.ndarray  # (n_unique, d) float32, as stored
    payloads: list[dict[str, Any] | None]  # per unique id
    strengths: np.ndarray | None = None  # (n_unique,) float64 s_μ; None: all 1
    expires: np.ndarray | None = None  # (n_unique,) float64 unix s, inf = never; None: never
    stored_at: float = 0.0  # unix s


def prepare_batch(
    config: BankConfig,
    vectors: Any,
    ids: Sequence[str | None] | None = None,
    payloads: Sequence[dict[str, Any] | None] | None = None,
    *,
    as_stored: bool = False,
    strengths: np.ndarray | None = None,
    expires: np.ndarray | None = None,
    stored_at: float = 0.0,
) -> PreparedBatch:
    """Validate a batch for a bank of `config` and compute what will be stored; pure.

    `as_stored` skips normalization (snapshot import: the vectors are already stored form).
    `strengths` and `expires` (per input row, validated: forgetting.py) follow the rows.
    """
    x = as_matrix(vectors, config.dim)
    n = x.shape[0]
    ids = list(ids) if ids is not None else [None] * n
    payloads = list(payloads) if payloads is not None else [None] * n
    if len(ids) != n or len(payloads) != n:
        raise InvalidInputError("ids and payloads must have one entry per vector")
    check_ids(ids)
    for p in payloads:
        if p is not None and not isinstance(p, dict):
            raise InvalidInputError("payload must be a JSON object or null")
    if config.normalize and not as_stored:
        x = normalize_rows(x, allow_zero=False)
    x = round_to_dtype(x, config.dtype)
    explicit = [i for i in ids if i is not None]
    if len(set(explicit)) != len(explicit):
        seen: set[str] = set()
        dup = next(i for i in explicit if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DuplicateIdError("the same id appears twice in one batch", {"id": dup})
    if not explicit:
        resolved = content_ids(x)
    else:
        missing = [r for r, i in enumerate(ids) if i is None]
        resolved = list(ids)  # type: ignore[arg-type]
        for r, cid in zip(missing, content_ids(x, missing), strict=True):
            resolved[r] = cid
    # The same vector twice without ids is one memory (content addressing); last wins.
    last_row = {mid: r for r, mid in enumerate(resolved)}
    if len(last_row) == n:  # no repeats (the usual case): no gather, no copy
        return PreparedBatch(
            resolved, resolved, np.ascontiguousarray(x), payloads, strengths, expires,
            stored_at,
        )  # fmt: skip
    order = sorted(last_row.values())
    return PreparedBatch(
        ids=resolved,
        unique_ids=[resolved[r] for r in order],
        vectors=np.ascontiguousarray(x[order]),
        payloads=[payloads[r] for r in order],
        strengths=None if strengths is None else strengths[order],
        expires=None if expires is None else expires[order],
        stored_at=stored_at,
    )
