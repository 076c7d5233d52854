"""lam_engine.store.codec: the one JSON codec (store and snapshot), exact for every integer."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lam_engine.errors import InvalidParameterError
from lam_engine.store import Storage, codec, read_snapshot, write_snapshot

STORE_DIR = Path(codec.__file__).parent
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_round_trip_is_exact_as_text_and_bytes(value) -> None:
    assert codec.loads(codec.dumps(value)) == value
    assert codec.loads(codec.dumps_text(value)) == value
    assert codec.dumps(value).decode() == codec.dumps_text(value)


def test_integers_beyond_64_bits_stay_integers() -> None:
    big = {"n": 2**70 + 1, "neg": -(2**65), "list": [12345678901234567890123]}
    for text in (codec.dumps(big), codec.dumps_text(big)):
        assert codec.loads(text) == big
        assert isinstance(codec.loads(text)["n"], int)


def test_non_finite_floats_are_written_as_null_and_refused_when_read() -> None:
    assert codec.loads(codec.dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}
    for text in ('{"x": NaN}', '{"x": Infinity}', b"[-Infinity, 2000000000000000000000]"):
        with pytest.raises(ValueError):
            codec.loads(text)


def test_what_is_not_json_is_an_invalid_parameter() -> None:
    with pytest.raises(InvalidParameterError, match="not JSON-serializable"):
        codec.dumps({"x": object()})
    with pytest.raises(InvalidParameterError):
        codec.encode_payloads([[1, 2]])  # type: ignore[list-item]  (not an object)
    assert codec.decode_payloads(["null", "null"]) == [None, None]
    assert codec.decode_payloads(['{"a": 1}', "null"]) == [{"a": 1}, None]
    assert codec.decode_payloads(["{", "}"]) is None  # corrupt: the caller says so


def test_store_and_snapshot_use_this_codec_and_no_other_json(tmp_path: Path) -> None:
    # The one codec: no other module of the store imports a JSON library.
    for path in STORE_DIR.glob("*.py"):
        if path.name != "codec.py":
            text = path.read_text()
            assert not re.search(r"^\s*import (orjson|json)\b", text, re.M), path.name
            assert not re.search(r"^\s*from (orjson|json)\b", text, re.M), path.name
    # And both round-trip the same awkward payload identically.
    # (A big integer sends the whole object through the stdlib, which refuses NaN.)
    payload = {"big": 2**66, "s": "é\u2028\ud800", "deep": [[{"k": [1.5, -0.0]}]]}
    expected = codec.loads(codec.dumps(payload))
    store = Storage(tmp_path / "s.sqlite3")
    store.create_bank("b", {"dim": 2, "extra": 2**66}, "2025-01-01T00:00:00Z")
    store.upsert("b", ["a"], np.ones((1, 2), np.float32), [payload])
    assert store.load("b").payloads == [expected]
    assert store.list_banks()[0].config["extra"] == 2**66
    store.close()
    buf = io.BytesIO()
    write_snapshot(buf, name="b", config={"dim": 2}, created_at="t", ids=["a"],
                   vectors=np.ones((1, 2), np.float32), payloads=[payload])  # fmt: skip
    buf.seek(0)
    assert read_snapshot(buf).payloads == [expected]
