"""What a dotted key finds in a payload: one reading shared by filters and indexes.

`lookup(payload, parts)` walks JSON objects only. A missing key, a payload that is None, or
a step into something that is not an object (an array, a scalar) finds nothing: `MISSING`
(distinct from JSON null). Otherwise it finds one value; when that value is an array, its
elements (one level, not flattened further) are what conditions test (`elements`). Kinds
are JSON's, by exact type (`scalar_kind`): bool is not an int, 1.0 is not 1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final


class _Missing:
    """The value a key finds when the path does not exist (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
MAX_KEY_LENGTH: Final = 512
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_SEGMENT = re.compile(r"[^.]+")


def split_key(key: Any) -> tuple[str, ...] | str:
    """The parts of a dotted key, or the reason it is not one (the caller raises)."""
    if not isinstance(key, str):
        return "key must be a string"
    if not key:
        return "key must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"key is longer than {MAX_KEY_LENGTH} characters"
    parts = tuple(key.split("."))
    if not all(_SEGMENT.fullmatch(p) for p in parts):
        return "key has an empty segment (a leading, trailing or doubled dot)"
    return parts


def lookup(payload: Mapping[str, Any] | None, parts: tuple[str, ...]) -> Any:
    """The value at a dotted key, or MISSING (see module docstring)."""
    cur: Any = payload
    for p in parts:
        if not isinstance(cur, dict) or p not in cur:
            return MISSING
        cur = cur[p]
    return cur


def elements(found: Any) -> Sequence[Any]:
    """What conditions test: the elements of an array (one level), else the value itself."""
    if found is MISSING:
        return ()
    if isinstance(found, list):
        return found
    return (found,)


def scalar_kind(x: Any) -> str | None:
    """The JSON scalar kind of x ('str', 'int', 'float', 'bool', 'null'), None otherwise.

    Exact type checks: bool is not an int here (JSON keeps them apart), and neither are
    Python subclasses, so the index and the unindexed path can never disagree on a kind.
    """
    t = type(x)
    if t is str:
        return "str"
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "float"
    if x is None:
        return "null"
    return None


def found_is_null(found: Any) -> bool:
    """`is_null`: the key is missing, or its value is null or an array with a null element."""
    if found is MISSING or found is None:
        return True
    return isinstance(found, list) and any(e is None for e in found)


def float_lower(b: float | int, inclusive: bool) -> tuple[float, bool]:
    """A float64 threshold (f, inclusive') with e ≥ b ⟺ e ≥ f (or > f) for every float e.

    An int bound beyond 2^53 rounds when converted; Python compares int and float exactly,
    so the rounding direction tells which float threshold is equivalent.
    """
    f = float(b)
    if f == b:
        return f, inclusive
    return f, f > b  # f < b: e ≥ b ⟺ e > f;  f > b: e ≥ b ⟺ e ≥ f


def float_upper(b: float | int, inclusive: bool) -> tuple[float, bool]:
    """The mirror of float_lower for ≤ / <."""
    f = float(b)
    if f == b:
        return f, inclusive
    return f, f < b
