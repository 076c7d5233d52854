"""lam_engine.store.snapshot: exact round trip; every malformed file is a SnapshotFormatError."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lam_engine.errors import InvalidParameterError, SnapshotFormatError
from lam_engine.store.snapshot import Snapshot, read_snapshot, write_snapshot

T0 = "2025-11-25T14:00:00Z"


def _snapshot_bytes(
    ids: list[str] | None = None,
    xi: np.ndarray | None = None,
    payloads: list[Any] | None = None,
    config: dict[str, Any] | None = None,
) -> bytes:
    xi = np.arange(12, dtype=np.float32).reshape(3, 4) if xi is None else xi  # (N, d)
    ids = [f"m{i}" for i in range(len(xi))] if ids is None else ids
    payloads = [None] * len(ids) if payloads is None else payloads
    buf = io.BytesIO()
    write_snapshot(
        buf,
        name="bank",
        config=config or {"dim": int(xi.shape[1]), "model": "B", "beta": 2.0},
        created_at=T0,
        ids=ids,
        vectors=xi,
        payloads=payloads,
    )
    return buf.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def _with_manifest(**changes: Any) -> bytes:
    members = _members(_snapshot_bytes())
    manifest = json.loads(members["manifest.json"])
    for key, value in changes.items():
        if value is _DROP:
            del manifest[key]
        else:
            manifest[key] = value
    members["manifest.json"] = json.dumps(manifest).encode()
    return _zip(members)


def _with_npy(array: np.ndarray, *, trailing: bytes = b"", allow_pickle: bool = False) -> bytes:
    members = _members(_snapshot_bytes())
    out = io.BytesIO()
    np.save(out, array, allow_pickle=allow_pickle)
    members["vectors.npy"] = out.getvalue() + trailing
    return _zip(members)


_DROP = object()


def _read(data: bytes, **kw: Any) -> Snapshot:
    return read_snapshot(io.BytesIO(data), **kw)


# -- round trip ----------------------------------------------------------------------------

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_payload = st.none() | st.dictionaries(st.text(max_size=6), _json, max_size=4)
_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@st.composite
def _banks(draw: st.DrawFn) -> tuple[list[str], np.ndarray, list[Any]]:
    n = draw(st.integers(0, 12))
    d = draw(st.integers(1, 6))
    ids = draw(st.lists(st.text(max_size=10), min_size=n, max_size=n, unique=True))
    xi = draw(hnp.arrays(np.float32, (n, d), elements=_f32))
    payloads = draw(st.lists(_payload, min_size=n, max_size=n))
    return ids, xi, payloads


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_banks())
def test_round_trip_is_exact(bank: tuple[list[str], np.ndarray, list[Any]]):
    ids, xi, payloads = bank
    config = {"dim": int(xi.shape[1]), "model": "B", "prefilter": {"kind": "none"}}
    snap = _read(_snapshot_bytes(ids, xi, payloads, config))
    assert snap.name == "bank" and snap.created_at == T0 and snap.config == config
    assert snap.ids == ids and snap.payloads == payloads
    assert snap.vectors.dtype == np.float32 and snap.vectors.shape == xi.shape
    assert snap.vectors.tobytes() == xi.astype("<f4").tobytes()  # bits: -0.0, subnormals
    assert snap.count == len(ids) and snap.dim == xi.shape[1]


def test_special_floats_and_unicode_survive():
    xi = np.array([[-0.0, 1e-45, 1.1754942e-38, 3.4028235e38]], dtype=np.float32)  # (1, 4)
    ids = ["🧠 mémoire \u0000 \ud800"]  # NUL and a lone surrogate too
    payloads = [{"nested": {"list": [1, 2.5, None, {"ü": "✓"}]}, "big": 2**65}]
    snap = _read(_snapshot_bytes(ids, xi, payloads))
    assert snap.vectors.view(np.uint32).tolist() == xi.view(np.uint32).tolist()
    assert snap.ids == ids and snap.payloads == payloads


class _Stream(io.RawIOBase):
    """A non-seekable pipe, like a request body or a response stream."""

    def __init__(self, data: bytes = b"") -> None:
        self._src, self.written = io.BytesIO(data), bytearray()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        return self._src.readinto(b)

    def write(self, b: Any) -> int:
        self.written += bytes(b)
        return len(b)


def test_streams_without_seek_work_both_ways():
    xi = np.random.default_rng(0).standard_normal((50, 8), dtype=np.float32)
    sink = _Stream()
    write_snapshot(
        sink, name="s", config={"dim": 8}, created_at=T0, ids=[str(i) for i in range(50)],
        vectors=xi, payloads=[{"i": i} for i in range(50)],
    )  # fmt: skip
    snap = read_snapshot(_Stream(bytes(sink.written)))
    assert snap.vectors.tobytes() == xi.tobytes() and snap.payloads[7] == {"i": 7}


def test_the_file_is_readable_without_lam():
    data = _snapshot_bytes(payloads=[{"a": 1}, None, None])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["manifest.json", "vectors.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        manifest = json.loads(zf.read("manifest.json"))
        xi = np.load(zf.open("vectors.npy"), allow_pickle=False)
    assert manifest["format"] == "lam-snapshot" and manifest["version"] == 1
    assert (manifest["count"], manifest["dim"]) == (3, 4) == xi.shape
    assert manifest["ids"] == ["m0", "m1", "m2"] and manifest["payloads"][0] == {"a": 1}
    assert xi.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(xi, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_deflated_archive_is_accepted():
    snap = _read(_zip(_members(_snapshot_bytes()), zipfile.ZIP_DEFLATED))
    assert snap.vectors.tolist() == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()


def test_writer_rejects_inconsistent_input():
    with pytest.raises(InvalidParameterError):
        _snapshot_bytes(ids=["a", "b"])  # 3 vectors
    with pytest.raises(InvalidParameterError):
        _snapshot_bytes(payloads=[None])


# -- rejection -------------------------------------------------------------------------------

_BAD_MANIFESTS = {
    "format": {"format": "zip"},
    "version": {"version": 2},
    "version-bool": {"version": True},
    "no-ids": {"ids": _DROP},
    "count": {"count": 4},
    "count-negative": {"count": -3},
    "dim-vs-config": {"dim": 5},
    "config-dim": {"config": {"dim": 5}},
    "config-type": {"config": [1]},
    "name-type": {"name": 7},
    "dup-ids": {"ids": ["a", "a", "b"]},
    "id-type": {"ids": ["a", 2, "b"]},
    "payload-type": {"payloads": [None, [1], None]},
    "payloads-len": {"payloads": [None]},
}


@pytest.mark.parametrize("changes", _BAD_MANIFESTS.values(), ids=_BAD_MANIFESTS.keys())
def test_bad_manifest_is_rejected(changes: dict[str, Any]):
    with pytest.raises(SnapshotFormatError):
        _read(_with_manifest(**changes))


@pytest.mark.parametrize(
    "body",
    [b"", b"garbage" * 50, b"PK\x03\x04" + b"\x00" * 100, b"[1, 2", b"{}", b"\x93NUMPY"],
    ids=["empty", "garbage", "fake-zip-header", "json", "empty-json", "npy-magic"],
)
def test_garbage_is_rejected(body: bytes):
    with pytest.raises(SnapshotFormatError):
        _read(body)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_file_is_rejected(fraction: float):
    data = _snapshot_bytes()
    with pytest.raises(SnapshotFormatError):
        _read(data[: int(len(data) * fraction)])


def test_manifest_that_is_not_json_is_rejected():
    members = _members(_snapshot_bytes())
    for body in (b"{not json", b'"a string"', b"\xff\xfe", b'{"format": NaN}'):
        members["manifest.json"] = body
        with pytest.raises(SnapshotFormatError):
            _read(_zip(members))


@pytest.mark.parametrize(
    "members",
    [["manifest.json"], ["vectors.npy"], ["manifest.json", "vectors.npy", "extra.txt"]],
    ids=["no-vectors", "no-manifest", "extra-member"],
)
def test_wrong_members_are_rejected(members: list[str]):
    real = _members(_snapshot_bytes())
    with pytest.raises(SnapshotFormatError, match="members"):
        _read(_zip({m: real.get(m, b"x") for m in members}))


@pytest.mark.parametrize(
    ("array", "kw"),
    [
        (np.zeros((3, 5), np.float32), {}),  # shape ≠ (count, dim)
        (np.zeros((4, 4), np.float32), {}),
        (np.zeros(12, np.float32), {}),
        (np.zeros((3, 4), np.float64), {}),  # dtype
        (np.zeros((3, 4), ">f4"), {}),  # byte order
        (np.asfortranarray(np.zeros((3, 4), np.float32)), {}),
        (np.array([[object()] * 4] * 3, dtype=object), {"allow_pickle": True}),
        (np.zeros((3, 4), np.float32), {"trailing": b"\x00" * 4}),
    ],
    ids=["cols", "rows", "1-d", "float64", "big-endian", "fortran", "pickle", "trailing"],
)
def test_bad_vectors_are_rejected(array: np.ndarray, kw: dict[str, Any]):
    with pytest.raises(SnapshotFormatError):
        _read(_with_npy(array, **kw))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_rejected(bad: float):
    xi = np.ones((3, 4), np.float32)
    xi[1, 2] = bad
    with pytest.raises(SnapshotFormatError, match="finite"):
        _read(_with_npy(xi))


def test_truncated_npy_data_is_rejected():
    members = _members(_snapshot_bytes())
    members["vectors.npy"] = members["vectors.npy"][:-4]
    with pytest.raises(SnapshotFormatError):
        _read(_zip(members))


def test_forged_npy_header_cannot_make_the_reader_allocate():
    # A header declaring 10⁹ × 10⁴ floats (40 TB) over 48 real bytes: rejected on sizes alone.
    huge = 10**9
    members = _members(_snapshot_bytes())
    manifest = json.loads(members["manifest.json"])
    manifest.update(count=huge, dim=10_000, config={"dim": 10_000})
    manifest["ids"] = manifest["payloads"] = []  # would mismatch count anyway: not reached
    header = {"descr": "<f4", "fortran_order": False, "shape": (huge, 10_000)}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    members["vectors.npy"] = npy.getvalue() + b"\x00" * 48
    members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(SnapshotFormatError):
        _read(_zip(members))
    # Same forgery with a consistent manifest (count 3) and a lying npy header.
    members = _members(_snapshot_bytes())
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {**header, "shape": (3, 4)})
    members["vectors.npy"] = npy.getvalue() + b"\x00" * 8  # 8 bytes, not 48
    with pytest.raises(SnapshotFormatError, match="size"):
        _read(_zip(members))


def test_zip_bomb_is_rejected_by_declared_size():
    # 16 MiB of zeros deflate to ~16 KiB; the declared sizes give it away before inflating.
    xi = np.zeros((1 << 14, 256), np.float32)  # (16384, 256): 16 MiB
    bomb = _zip(_members(_snapshot_bytes(xi=xi)), zipfile.ZIP_DEFLATED)
    assert len(bomb) < 1 << 18
    with pytest.raises(SnapshotFormatError, match="size limit"):
        _read(bomb, max_bytes=4 << 20)
    assert _read(bomb, max_bytes=32 << 20).vectors.shape == (1 << 14, 256)


def test_lying_zip_directory_size_is_rejected():
    data = bytearray(_snapshot_bytes())
    # Central directory entry of vectors.npy: claim 2 GiB uncompressed.
    at = data.rindex(b"PK\x01\x02")
    assert data[at + 46 : at + 46 + 11] == b"vectors.npy"
    struct.pack_into("<I", data, at + 24, 2**31)
    with pytest.raises(SnapshotFormatError, match="size limit"):
        _read(bytes(data), max_bytes=64 << 20)
    with pytest.raises(SnapshotFormatError):
        _read(bytes(data))


def test_non_seekable_stream_over_the_limit_is_rejected():
    data = _snapshot_bytes(xi=np.ones((4096, 64), np.float32))  # 1 MiB of vectors
    with pytest.raises(SnapshotFormatError, match="size limit"):
        read_snapshot(_Stream(data), max_bytes=64 << 10)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_corrupted_bytes_give_a_snapshot_or_a_format_error(data: st.DataObject):
    raw = bytearray(_snapshot_bytes(payloads=[{"k": [1, 2]}, None, {"x": "y"}]))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        snap = _read(bytes(raw))
    except SnapshotFormatError:
        return
    # A corruption the checks let through still yields a consistent snapshot.
    assert snap.vectors.shape == (len(snap.ids), snap.config["dim"])
    assert np.isfinite(snap.vectors).all()
