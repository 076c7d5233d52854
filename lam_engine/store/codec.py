"""The one JSON codec of the store and of snapshots: orjson, exact for every integer.

orjson is fast but refuses integers beyond 64 bits and lone surrogates when writing, and
turns integers beyond 64 bits into floats when reading; both cases fall back to the
stdlib json, which is exact for them. A non-finite float inside an object is written as
null (orjson's rule) and ``NaN``/``Infinity`` are refused when reading: they are not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from ..errors import InvalidParameterError

# A run of 19 ASCII digits (an integer that may exceed 64 bits): a translate and a
# substring search, 15x faster than the regex \d{19} on a load's payload text.
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_DIGITS_TO_ZERO_BYTES = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = "0" * 19
_NINETEEN_DIGITS_BYTES = b"0" * 19


def _stdlib_dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidParameterError(f"not JSON-serializable: {exc}") from None


def dumps(obj: Any) -> bytes:
    """UTF-8 JSON of `obj`; InvalidParameterError when it is not JSON-serializable."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _stdlib_dumps(obj).encode()  # ASCII: json escapes the rest, surrogates too


def dumps_text(obj: Any) -> str:
    """`dumps` as text (what SQLite stores in a TEXT column)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return _stdlib_dumps(obj)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _may_hold_long_int(data: str | bytes) -> bool:
    if isinstance(data, str):
        return _NINETEEN_DIGITS in data.translate(_DIGITS_TO_ZERO)
    return _NINETEEN_DIGITS_BYTES in bytes(data).translate(_DIGITS_TO_ZERO_BYTES)


def loads(data: str | bytes) -> Any:
    """Parse JSON text or UTF-8 bytes; ValueError (or RecursionError) when it is not JSON."""
    if not _may_hold_long_int(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the stdlib parser decides (and words the error)
    return json.loads(data, parse_constant=_reject_constant)


def encode_payloads(payloads: Sequence[dict[str, Any] | None]) -> list[str | None]:
    """Each payload as JSON text, None for None; a payload must be an object."""
    out: list[str | None] = [None] * len(payloads)
    if payloads.count(None) == len(payloads):
        return out  # no payloads (a .npy batch): no per-row loop
    for k, p in enumerate(payloads):
        if p is None:
            continue
        if not isinstance(p, dict):
            raise InvalidParameterError("a payload must be a JSON object or null")
        out[k] = dumps_text(p)
    return out


def decode_payloads(texts: Sequence[str]) -> list[Any] | None:
    """Payload texts ('null' for none) parsed with one parser call; None when corrupt."""
    if texts.count("null") == len(texts):
        return [None] * len(texts)  # no payloads (e.g. stored from .npy): nothing to parse
    try:
        out = loads("[" + ",".join(texts) + "]")
    except (ValueError, RecursionError):
        return None
    if not isinstance(out, list) or len(out) != len(texts):
        return None
    return out
