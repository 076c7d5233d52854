"""The forgetting fields of a batch (API.md "Forgetting"), validated once at the boundary.

Per memory: `strength` s > 0, finite (default 1), and a lifetime: `ttl_s` > 0 or
`expires_at` (RFC 3339 text or unix seconds, in the future), not both; without either the
bank's `default_ttl_s` applies. Anything else is a 422 (InvalidParameterError) naming the
memory's index and the field, and nothing is stored.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .clock import parse_rfc3339
from .errors import InvalidParameterError


def _bad(i: int, field: str, message: str, value: Any) -> InvalidParameterError:
    return InvalidParameterError(
        f"memories[{i}].{field} {message}", {"index": i, "field": field, field: repr(value)[:60]}
    )


def _number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_strength(value: Any, i: int = 0) -> float:
    if not _number(value) or not math.isfinite(value) or value <= 0:
        raise _bad(i, "strength", "must be a finite number > 0", value)
    return float(value)


def resolve_batch(
    n: int,
    strengths: Sequence[Any] | None,
    ttl_s: Sequence[Any] | None,
    expires_at: Sequence[Any] | None,
    *,
    default_ttl_s: float | None,
    now: float,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(strengths (n,) float64 or None: all 1, expiry (n,) unix s, inf = never, or None)."""
    for name, col in (("strength", strengths), ("ttl_s", ttl_s), ("expires_at", expires_at)):
        if col is not None and len(col) != n:
            raise InvalidParameterError(f"{name} must have one entry per memory")
    s = None
    if strengths is not None and any(x is not None for x in strengths):
        s = np.array([1.0 if x is None else check_strength(x, i) for i, x in enumerate(strengths)])
    if ttl_s is None and expires_at is None and default_ttl_s is None:
        return s, None
    exp = np.full(n, math.inf)
    for i in range(n):
        ttl = None if ttl_s is None else ttl_s[i]
        at = None if expires_at is None else expires_at[i]
        if ttl is not None and at is not None:
            raise _bad(i, "ttl_s", "and expires_at are exclusive: give one of them", ttl)
        if ttl is not None:
            if not _number(ttl) or not math.isfinite(ttl) or ttl <= 0:
                raise _bad(i, "ttl_s", "must be a finite number > 0", ttl)
            exp[i] = now + float(ttl)
        elif at is not None:
            exp[i] = _expiry(i, at, now)
        elif default_ttl_s is not None:
            exp[i] = now + default_ttl_s
    return s, exp


def _expiry(i: int, at: Any, now: float) -> float:
    if isinstance(at, str):
        try:
            t = parse_rfc3339(at)
        except ValueError:
            raise _bad(i, "expires_at", "must be an RFC 3339 timestamp", at) from None
    elif _number(at) and math.isfinite(at):
        t = float(at)
    else:
        raise _bad(i, "expires_at", "must be an RFC 3339 timestamp", at)
    if t <= now:
        raise _bad(i, "expires_at", "must be in the future", at)
    return t
