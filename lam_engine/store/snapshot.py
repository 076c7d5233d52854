"""Portable single-file snapshot of a bank: a ZIP of manifest.json + vectors.npy.

The format is specified in docs/snapshot-format.md; its JSON goes through the store's one
codec (codec.py). Members are STORED (not compressed): float32 vectors barely compress,
and stored members stream out at disk speed. The reader also accepts DEFLATE members
(someone may re-zip a snapshot).

Reading treats the file as untrusted: every structural or semantic problem becomes a
``SnapshotFormatError``; sizes declared by the ZIP and by the .npy header are checked
(against each other and against ``max_bytes``) before anything of that size is
allocated, so a small file cannot make the reader allocate a huge array.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import numpy as np

from ..errors import InvalidParameterError, LamError, SnapshotFormatError
from .codec import dumps, loads

FORMAT = "lam-snapshot"
VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
_MEMBERS = {MANIFEST, VECTORS}
_F32 = np.dtype("<f4")
_CHUNK = 16 << 20  # bytes per read of vectors.npy
_ZIP64_AT = 1 << 30  # members this large get ZIP64 headers (the 32-bit fields end at 4 GiB)


@dataclass
class Snapshot:
    name: str
    config: dict[str, Any]
    created_at: str
    ids: list[str]
    vectors: np.ndarray  # (N, d) float32
    payloads: list[dict[str, Any] | None]
    texts: list[str | None] | None = None  # a text bank's: one per memory (None: a vector)
    # Optional (snapshots before forgetting have none): {"strengths", "stored_at",
    # "reinforced_at", "expires_at"}, count entries each (unix s; null = never).
    times: dict[str, list[Any]] | None = None

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    try:
        return dumps(manifest)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"snapshot manifest is {exc.message}") from None


def write_snapshot(
    fileobj: BinaryIO,
    *,
    name: str,
    config: dict[str, Any],
    created_at: str,
    ids: list[str],
    vectors: np.ndarray,
    payloads: list[dict[str, Any] | None],
    texts: list[str | None] | None = None,
    times: dict[str, list[Any]] | None = None,
) -> None:
    """Write one snapshot to a binary file object (seekable or a plain stream)."""
    xi = np.ascontiguousarray(vectors, dtype=_F32)  # (N, d)
    if xi.ndim != 2 or xi.shape[0] != len(ids) or len(payloads) != len(ids):
        raise InvalidParameterError(
            "ids, vectors (N, d) and payloads must have the same length N",
            {"ids": len(ids), "vectors": list(xi.shape), "payloads": len(payloads)},
        )
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "config": config,
        "created_at": created_at,
        "count": int(xi.shape[0]),
        "dim": int(xi.shape[1]),
        "ids": list(ids),
        "payloads": list(payloads),
    }
    if texts is not None and any(t is not None for t in texts):
        # Optional, so version 1 still: a reader that predates text banks ignores it.
        manifest["texts"] = list(texts)
    if times is not None:
        manifest["forgetting"] = times
    body = _manifest_bytes(manifest)
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, body)
        with zf.open(VECTORS, "w", force_zip64=xi.nbytes >= _ZIP64_AT) as out:
            np.lib.format.write_array(out, xi, allow_pickle=False)


def read_snapshot(fileobj: BinaryIO, *, max_bytes: int | None = None) -> Snapshot:
    """Read and fully validate a snapshot; any defect raises SnapshotFormatError.

    ``max_bytes`` bounds the uncompressed size of the archive's members (and, for a
    non-seekable stream, the bytes read from it).
    """
    try:
        return _read(fileobj, max_bytes)
    except LamError:
        raise
    except Exception as exc:
        # Untrusted input reaches zipfile, zlib, numpy and JSON parsers, each with its own
        # exceptions; the caller must only ever see a format error.
        raise SnapshotFormatError(f"invalid snapshot: {type(exc).__name__}") from exc


def _bad(message: str, details: Any = None) -> SnapshotFormatError:
    return SnapshotFormatError(f"invalid snapshot: {message}", details)


def _seekable(fileobj: BinaryIO, max_bytes: int | None) -> IO[bytes]:
    if fileobj.seekable():
        return fileobj
    limit = -1 if max_bytes is None else max_bytes + (1 << 20)  # + room for zip headers
    data = fileobj.read(limit)
    if max_bytes is not None and len(data) >= limit:
        raise _bad("larger than the size limit", {"max_bytes": max_bytes})
    return io.BytesIO(data)


def _read(fileobj: BinaryIO, max_bytes: int | None) -> Snapshot:
    try:
        zf = zipfile.ZipFile(_seekable(fileobj, max_bytes))
    except zipfile.BadZipFile as exc:
        raise _bad("not a ZIP archive") from exc
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if sorted(names) != sorted(_MEMBERS):
            raise _bad(f"members must be exactly {sorted(_MEMBERS)}", {"members": names[:10]})
        for info in infos:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _bad("members must be stored or deflated", {"member": info.filename})
        total = sum(i.file_size for i in infos)
        if max_bytes is not None and total > max_bytes:
            raise _bad("larger than the size limit", {"size": total, "max_bytes": max_bytes})
        meta = _manifest(zf.read(MANIFEST))
        xi = _vectors(zf, zf.getinfo(VECTORS), meta["count"], meta["dim"])
    return Snapshot(
        name=meta["name"],
        config=meta["config"],
        created_at=meta["created_at"],
        ids=meta["ids"],
        vectors=xi,
        payloads=meta["payloads"],
        texts=meta.get("texts"),
        times=meta.get("forgetting"),
    )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _manifest(raw: bytes) -> dict[str, Any]:
    try:
        meta = loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad("manifest.json is not valid JSON") from exc
    if not isinstance(meta, dict):
        raise _bad("manifest.json must be an object")
    if meta.get("format") != FORMAT:
        raise _bad(f"format must be {FORMAT!r}", {"format": str(meta.get("format"))[:40]})
    if not _is_int(meta.get("version")) or meta["version"] != VERSION:
        raise _bad(f"unsupported version (this reader knows {VERSION})")
    expected = {"name": str, "config": dict, "created_at": str, "ids": list, "payloads": list}
    for key, kind in expected.items():
        if not isinstance(meta.get(key), kind):
            raise _bad(f"{key} must be a {kind.__name__}")
    count: Any = meta.get("count")
    dim: Any = meta.get("dim")
    if not (_is_int(count) and _is_int(dim) and count >= 0 and dim >= 1):
        raise _bad("count must be an integer >= 0 and dim an integer >= 1")
    if meta["config"].get("dim") != dim:
        raise _bad("dim differs from config.dim", {"dim": dim})
    ids, payloads = meta["ids"], meta["payloads"]
    if len(ids) != count or len(payloads) != count:
        raise _bad("ids and payloads must have count entries", {"count": count})
    if not all(isinstance(i, str) for i in ids):
        raise _bad("ids must be strings")
    if len(set(ids)) != count:
        raise _bad("ids must be unique")
    if not all(p is None or isinstance(p, dict) for p in payloads):
        raise _bad("each payload must be an object or null")
    texts = meta.get("texts")
    if texts is not None and (
        not isinstance(texts, list)
        or len(texts) != count
        or not all(t is None or isinstance(t, str) for t in texts)
    ):
        raise _bad("texts, when given, must have count entries, each a string or null")
    _check_times(meta.get("forgetting"), count)
    return meta


def _check_times(times: Any, count: int) -> None:
    """The optional forgetting columns: numbers (or null where a time is none), count each."""
    if times is None:
        return
    columns = ("strengths", "stored_at", "reinforced_at", "expires_at")
    if not isinstance(times, dict) or set(times) != set(columns):
        raise _bad(f"forgetting must be an object with {list(columns)}")
    for key in columns:
        col = times[key]
        nullable = key in ("reinforced_at", "expires_at")
        if not isinstance(col, list) or len(col) != count:
            raise _bad(f"forgetting.{key} must have count entries")
        for x in col:
            if x is None and nullable:
                continue
            if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
                raise _bad(f"forgetting.{key} must hold numbers")
            if key == "strengths" and not 0 < x < float("inf"):
                raise _bad("forgetting.strengths must be finite and > 0")


def _vectors(zf: zipfile.ZipFile, info: zipfile.ZipInfo, count: int, dim: int) -> np.ndarray:
    nbytes = count * dim * _F32.itemsize
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise _bad("vectors.npy must be .npy format version 1.0 or 2.0")
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(f)
        if dtype != _F32 or fortran_order:
            raise _bad("vectors.npy must hold C-ordered little-endian float32")
        if tuple(shape) != (count, dim):
            raise _bad("vectors.npy shape differs from (count, dim)", {"shape": list(shape)})
        # The header's offset is where numpy's reader left the member.
        if info.file_size != f.tell() + nbytes:
            raise _bad("vectors.npy size does not match its header")
        xi = np.empty((count, dim), dtype=_F32)  # (N, d)
        view = xi.reshape(-1).view(np.uint8).data  # (N·d·4,) bytes of xi, written in place
        pos = 0
        while pos < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise _bad("vectors.npy is truncated")
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        if f.read(1):
            raise _bad("vectors.npy has trailing bytes")
    if not np.isfinite(xi).all():
        raise _bad("vectors must be finite (no NaN or infinity)")
    return xi
