"""The saved-index file format: one bank's trained FAISS index in a directory.

Saving lets a restart skip rebuilding a trained index (IVF, HNSW); `load_index` reads it
back only if the caller's consistency tag (the engine passes the bank's store write
generation), the dimension and the PrefilterConfig all equal what was saved. Per bank
`name` the directory holds `<name>.json`, the manifest (tag, config, the index's own
state, the names of its data files), and immutable data files `<name>.<token>.faiss`
(+ `<name>.<token>.<array>.npy` for the kind's arrays, e.g. HNSW's labels). A save writes
and fsyncs new data files, then atomically replaces the manifest (temp file, fsync,
rename, fsync of the directory), then deletes the older data files: a crash at any point
leaves either the old or the new manifest, each with the data files it names. A flat
index (kind "flat", or IVF below IVF_MIN_TRAIN) is not saved: rebuilding it is a copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..config import PrefilterConfig
from .base import Prefilter, RestoreError
from .kinds import make_prefilter

# Version of the saved-index layout (manifest + data files); another version is not read.
SAVED_INDEX_FORMAT = 1
_TMP_MARK = ".tmp-"  # temporary files: "<final name>.tmp-<token>"


class SavedIndexUnusable(Exception):
    """A saved index cannot be used: absent, stale (another tag or config) or damaged.

    `damaged` is True when files exist but cannot be read or disagree with each other
    (worth a warning); False when there is simply nothing current to load.
    """

    def __init__(self, reason: str, *, damaged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.damaged = damaged


def _as_json(tag: Any) -> Any:
    return json.loads(json.dumps(tag))  # the form it takes in the manifest


def is_saved_at(pf: Prefilter, directory: Path | str, name: str) -> bool:
    """True when the content is unchanged since it was saved to or loaded from there."""
    saved = pf.saved
    directory = Path(directory)
    return (
        saved is not None
        and saved[0] == directory
        and saved[1] == name
        and saved[3] == pf.version
        and all((directory / f).is_file() for f in saved[4]["files"].values())
    )


def save_index(pf: Prefilter, directory: Path | str, name: str, tag: Any) -> str:
    """Save the index as bank `name` in `directory`, tagged with `tag` (JSON-able).

    Returns what was done: "written"; "tagged" (the index is unchanged since it was
    last saved or loaded there: only a new manifest was written); "unchanged" (same
    tag too: nothing written); "skipped" (not worth saving: what was saved under `name`
    is removed). Raises OSError or RuntimeError (FAISS) when writing fails; the files
    of the previous save then stay as they were.
    """
    directory = Path(directory)
    if not pf.worth_saving:
        remove_saved(directory, name)
        pf.saved = None
        return "skipped"
    tag = _as_json(tag)
    saved = pf.saved
    unchanged = is_saved_at(pf, directory, name)
    if unchanged and saved is not None and saved[2] == tag:
        return "unchanged"
    directory.mkdir(parents=True, exist_ok=True)
    arrays = pf.arrays()
    if unchanged and saved is not None:
        files = dict(saved[4]["files"])
        written: list[Path] = []
    else:
        stem = f"{name}.{secrets.token_hex(8)}"
        files = {"index": f"{stem}.faiss", **{a: f"{stem}.{a}.npy" for a in arrays}}
        written = [directory / f for f in files.values()]
    try:
        if written:
            _write_data(pf, directory, files, arrays)
        manifest = {
            "format": SAVED_INDEX_FORMAT,
            "bank": name,
            "tag": tag,
            "dim": pf.dim,
            "config": pf.config.to_dict(),
            "state": pf.state(),
            "files": files,
            "faiss_version": faiss.__version__,
        }
        _write_atomic(directory / f"{name}.json", json.dumps(manifest, indent=1).encode())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    pf.saved = (directory, name, tag, pf.version, manifest)
    keep = {f"{name}.json", *files.values()}
    for path in _files_of(directory, name):
        if path.name not in keep:
            path.unlink(missing_ok=True)
    return "written" if written else "tagged"


def _write_data(
    pf: Prefilter, directory: Path, files: dict[str, str], arrays: dict[str, np.ndarray]
) -> None:
    path = directory / files["index"]
    faiss.write_index(pf.faiss_index, str(path))
    _fsync_path(path)
    for key, array in arrays.items():
        with open(directory / files[key], "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())


def load_index(
    config: PrefilterConfig, dim: int, directory: Path | str, name: str, tag: Any
) -> Prefilter:
    """The index saved as bank `name`, if it was saved with exactly this tag, config and dim.

    Raises SavedIndexUnusable otherwise (nothing saved, stale, or damaged files).
    """
    directory = Path(directory)
    manifest = _read_manifest(directory / f"{name}.json")
    try:
        fields = ("bank", "tag", "dim", "config", "state", "files")
        bank, saved_tag, saved_dim, saved_config, state, files = (manifest[k] for k in fields)
    except KeyError as exc:
        raise SavedIndexUnusable(f"manifest corrupt: {exc}", damaged=True) from exc
    tag = _as_json(tag)
    if bank != name:
        raise SavedIndexUnusable(f"manifest is for bank {bank!r}", damaged=True)
    if not isinstance(files, dict) or not all(
        isinstance(f, str) and f.startswith(f"{name}.") and "/" not in f and os.sep not in f
        for f in files.values()
    ):
        raise SavedIndexUnusable("manifest names files outside the bank's", damaged=True)
    if saved_tag != tag:
        raise SavedIndexUnusable(f"saved at {saved_tag}, the bank is at {tag}")
    if saved_dim != dim or saved_config != config.to_dict():
        raise SavedIndexUnusable("saved for another configuration")
    pf = make_prefilter(config, dim)
    try:
        index = faiss.read_index(str(directory / files["index"]))
        arrays = {}
        for key, file in files.items():
            if key != "index":
                with open(directory / file, "rb") as f:
                    arrays[key] = np.load(f, allow_pickle=False)
        pf.restore(index, state, arrays)
    except RestoreError as exc:
        raise SavedIndexUnusable(f"saved index inconsistent: {exc}", damaged=True) from exc
    except Exception as exc:  # FAISS raises RuntimeError; numpy ValueError/OSError
        raise SavedIndexUnusable(f"index file unreadable: {exc}", damaged=True) from exc
    pf.saved = (directory, name, tag, pf.version, manifest)
    return pf


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SavedIndexUnusable("no saved index") from None
    except OSError as exc:
        raise SavedIndexUnusable(f"manifest unreadable: {exc}", damaged=True) from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise SavedIndexUnusable(f"manifest corrupt: {exc}", damaged=True) from exc
    if not isinstance(manifest, dict):
        raise SavedIndexUnusable("manifest corrupt: not an object", damaged=True)
    if manifest.get("format") != SAVED_INDEX_FORMAT:
        raise SavedIndexUnusable(f"saved in format {manifest.get('format')!r}")
    return manifest


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Some filesystems cannot fsync a directory; the rename is then as durable as it gets.
    with contextlib.suppress(OSError):
        _fsync_path(directory)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` by `data`: temp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _files_of(directory: Path, name: str) -> list[Path]:
    """Every file saved for bank `name` (names are "<bank>." + more; bank names have no dot)."""
    try:
        return [p for p in directory.iterdir() if p.name.split(".", 1)[0] == name and "." in p.name]
    except FileNotFoundError:
        return []


def remove_saved(directory: Path | str, name: str) -> None:
    """Delete what is saved for bank `name`: the manifest first, so nothing half-remains."""
    directory = Path(directory)
    (directory / f"{name}.json").unlink(missing_ok=True)
    for path in _files_of(directory, name):
        path.unlink(missing_ok=True)


def prune_saved(directory: Path | str, keep: set[str]) -> list[str]:
    """Delete saved indexes of banks not in `keep`, and leftovers (temp files, data files no
    manifest names) of those in it. Returns the names of the deleted files."""
    directory = Path(directory)
    try:
        paths = list(directory.iterdir())
    except FileNotFoundError:
        return []
    referenced: set[str] = set()
    for name in keep:
        try:
            manifest = json.loads((directory / f"{name}.json").read_bytes())
            referenced.update({f"{name}.json", *manifest["files"].values()})
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
    removed = []
    for path in paths:
        if path.is_file() and path.name not in referenced:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
