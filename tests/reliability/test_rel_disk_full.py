"""Disk full and read-only data dir: writes answer 507 storage_unavailable, reads keep working,
nothing half-written, writes resume when space returns.

Methods, in order of preference (the first one available is used; none is ever skipped):
1. a real small filesystem: `mount -t tmpfs -o size=2m` as the data dir (ENOSPC from the kernel),
   grown back with `mount -o remount,size=64m`; read-only: the same tmpfs remounted `ro`
   while no server holds it open, then a server started on it;
2. fault injection at the storage layer in-process (TestClient): SQLite's own
   SQLITE_FULL / SQLITE_READONLY raised from inside the store's write transaction.
The injection variant also runs unconditionally, as it checks the in-memory side (a failed
transaction must leave the engine's bank unchanged) independently of any filesystem.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.reliability.rel_harness import (
    ServerFactory,
    audit_batches,
    batch_body,
    figure,
    scroll_all,
    sqlite_check,
)

DIM = 64
K = 100


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path | None]:
    """A 2 MiB tmpfs mounted under tmp_path, or None where mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)):
        yield None
        return
    try:
        yield mnt
    finally:
        _run("umount", "-l", str(mnt))


def _assert_507(r: httpx.Response) -> None:
    assert r.status_code == 507, r.text
    err = r.json()["error"]
    assert err["code"] == "storage_unavailable", err
    assert "Traceback" not in r.text and "/" not in err["message"], err


def _check_reads(c: httpx.Client, acked: list[str], count: int) -> None:
    assert c.get("/v1/banks/full").json()["count"] == count
    first = acked[0]
    r = c.get(f"/v1/banks/full/memories/{first}-0")
    assert r.status_code == 200, r.text
    q = [np.ones(DIM).tolist()]
    r = c.post("/v1/banks/full/query", json={"queries": q, "top_k": 3})
    assert r.status_code == 200, r.text
    assert len(r.json()["results"][0]["matches"]) == 3


def _fill_until_full(c: httpx.Client, acked: list[str], limit: int = 400) -> httpx.Response:
    for n in range(limit):
        prefix = f"f{n}k{K}"
        r = c.post("/v1/banks/full/memories", json=batch_body(prefix, DIM))
        if r.status_code != 200:
            return r
        acked.append(prefix)
    raise AssertionError("the small filesystem never filled up")


def _tmpfs_disk_full(make_server: ServerFactory, mnt: Path) -> dict[str, Any]:
    data = mnt / "data"
    server = make_server("full", data_dir=data)
    acked: list[str] = []
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        assert c.post("/v1/banks", json={"name": "full", "dim": DIM}).status_code == 201
        _assert_507(_fill_until_full(c, acked))
        # Full. A checkpoint after the failed batch may let SQLite reuse WAL pages, so the
        # next small batch can fit (and is then acknowledged like any other); fill again
        # until two batches in a row fail: each fails the same way and changes nothing.
        for attempt in range(20):
            again = c.post("/v1/banks/full/memories", json=batch_body(f"again{attempt}k{K}", DIM))
            if again.status_code != 200:
                break
            acked.append(f"again{attempt}k{K}")
        _assert_507(again)
        _assert_507(c.post("/v1/banks/full/memories", json=batch_body(f"again{K}k{K}", DIM)))
        count = len(acked) * K
        # A tiny write may still fit in a partly free page; it succeeds or fails cleanly.
        r = c.post("/v1/banks", json={"name": "other", "dim": 4})
        if r.status_code != 201:
            _assert_507(r)
        _check_reads(c, acked, count)
        audit = audit_batches(scroll_all(c, "full"), DIM)
        assert set(acked) == audit.complete and not audit.partial and not audit.corrupt
        # Space returns: the very next write succeeds.
        assert _run("mount", "-o", "remount,size=64m", str(mnt))
        r = c.post("/v1/banks/full/memories", json=batch_body(f"after0k{K}", DIM))
        assert r.status_code == 200, r.text
        acked.append(f"after0k{K}")
        assert r.json()["count"] == count + K
    server.stop()
    integrity, _ = sqlite_check(data)
    server.start()
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        audit = audit_batches(scroll_all(c, "full"), DIM)
    server.stop()
    assert integrity == "ok"
    assert audit.complete == set(acked) and not audit.partial and not audit.corrupt
    return {"acked_before_full": len(acked) - 1, "integrity": integrity}


def _tmpfs_read_only(make_server: ServerFactory, mnt: Path) -> dict[str, Any]:
    data = mnt / "ro-data"
    server = make_server("ro", data_dir=data)
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        assert c.post("/v1/banks", json={"name": "full", "dim": DIM}).status_code == 201
        assert (
            c.post("/v1/banks/full/memories", json=batch_body(f"ro0k{K}", DIM)).status_code == 200
        )
    server.stop()
    assert _run("mount", "-o", "remount,ro", str(mnt)), "remount ro refused"
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60.0) as c:
            _assert_507(c.post("/v1/banks/full/memories", json=batch_body("ro1k3", DIM)))
            _assert_507(c.delete(f"/v1/banks/full/memories/ro0k{K}-0"))
            _check_reads(c, [f"ro0k{K}"], K)
        server.stop()
    finally:
        assert _run("mount", "-o", "remount,rw", str(mnt))
    return {"read_only_reads": "ok"}


# ---- fault injection (fallback, and always run) ------------------------------------------


def _sqlite_error(name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full" if "FULL" in name else "readonly")
    exc.sqlite_errorname = name
    return exc


def _injected(tmp_path: Path, error_name: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from lam_engine.store import storage as storage_module
    from service import Settings, create_app

    original = storage_module.insert_rows
    failing = {"on": False}

    def insert_rows(*args: Any, **kwargs: Any) -> list[int]:
        seqs = original(*args, **kwargs)
        if failing["on"]:  # rows already written inside the transaction: it must roll back
            raise _sqlite_error(error_name)
        return seqs

    app = create_app(Settings(data_dir=tmp_path / f"inject-{error_name}"))
    acked = [f"i0k{K}"]
    with pytest.MonkeyPatch.context() as mp, TestClient(app) as c:
        mp.setattr(storage_module, "insert_rows", insert_rows)
        while c.get("/readyz").status_code != 200:
            pass
        assert c.post("/v1/banks", json={"name": "full", "dim": DIM}).status_code == 201
        assert c.post("/v1/banks/full/memories", json=batch_body(acked[0], DIM)).status_code == 200
        failing["on"] = True
        for n in range(3):
            r = c.post("/v1/banks/full/memories", json=batch_body(f"x{n}k{K}", DIM))
            _assert_507(r)  # type: ignore[arg-type]
        _check_reads(c, acked, K)  # type: ignore[arg-type]
        failing["on"] = False
        r = c.post("/v1/banks/full/memories", json=batch_body(f"i1k{K}", DIM))
        assert r.status_code == 200 and r.json()["count"] == 2 * K, r.text
        acked.append(f"i1k{K}")
        audit = audit_batches(scroll_all(c, "full"), DIM)  # type: ignore[arg-type]
    assert audit.complete == set(acked) and not audit.partial
    # The rolled-back transactions left nothing on disk either.
    app2 = create_app(Settings(data_dir=tmp_path / f"inject-{error_name}"))
    with TestClient(app2) as c:
        while c.get("/readyz").status_code != 200:
            pass
        audit = audit_batches(scroll_all(c, "full"), DIM)  # type: ignore[arg-type]
    assert audit.complete == set(acked) and not audit.partial
    return {"injected": error_name}


@pytest.mark.parametrize("error_name", ["SQLITE_FULL", "SQLITE_READONLY"])
def test_injected_storage_failure_is_507_and_changes_nothing(
    tmp_path: Path, error_name: str
) -> None:
    figure("storage_fault_injection", **_injected(tmp_path, error_name), result="ok")


def test_disk_full_then_space_returns(
    make_server: ServerFactory, tmpfs: Path | None, tmp_path: Path
) -> None:
    if tmpfs is None:
        figure("disk_full", method="injection", **_injected(tmp_path, "SQLITE_FULL"))
        return
    figure("disk_full", method="tmpfs-2MiB", **_tmpfs_disk_full(make_server, tmpfs))


def test_read_only_data_dir_serves_reads(
    make_server: ServerFactory, tmpfs: Path | None, tmp_path: Path
) -> None:
    if tmpfs is None:
        figure("read_only", method="injection", **_injected(tmp_path, "SQLITE_READONLY"))
        return
    figure("read_only", method="tmpfs-remount-ro", **_tmpfs_read_only(make_server, tmpfs))
