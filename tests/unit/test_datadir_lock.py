"""lam_engine.store.lock: one live Engine per data directory; the second opener fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lam_engine import BankConfig, ConflictError, Engine
from lam_engine.errors import DataDirLockedError
from lam_engine.store import DataDirLock, Storage
from lam_engine.store.lock import LOCK_FILE

# A child that holds a data dir: opens an Engine, says "ready", then waits to be killed.
_HOLDER = textwrap.dedent(
    """
    import sys
    from lam_engine.store import DataDirLock
    lock = DataDirLock.acquire(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def _snapshot_dir(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `directory` with its mtime and content: what 'changes nothing' means."""
    return {
        str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _filled(directory: Path) -> None:
    with Engine.open(directory) as engine:
        engine.create_bank("b", BankConfig(dim=4))
        engine.upsert("b", np.eye(4, dtype=np.float32), ids=list("wxyz"))


def test_a_second_open_in_the_same_process_fails_and_close_releases(tmp_path: Path) -> None:
    _filled(tmp_path)
    first = Engine.open(tmp_path)
    before = _snapshot_dir(tmp_path)
    with pytest.raises(DataDirLockedError) as err:
        Engine.open(tmp_path)
    assert isinstance(err.value, ConflictError) and err.value.status == 409
    assert err.value.code == "data_dir_locked"
    assert err.value.details["pid"] == os.getpid()
    assert "this process" in err.value.message and str(tmp_path) in err.value.message
    assert _snapshot_dir(tmp_path) == before  # the failed open touched nothing
    first.upsert("b", np.ones((1, 4), np.float32), ids=["v"])  # the holder is unaffected
    first.close()
    with Engine.open(tmp_path) as again:
        assert again.bank_info("b").count == 5


def test_another_process_holding_the_dir_is_named_and_its_death_frees_it(tmp_path: Path) -> None:
    _filled(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        before = _snapshot_dir(tmp_path)
        with pytest.raises(DataDirLockedError) as err:
            Engine.open(tmp_path)
        assert err.value.details["pid"] == holder.pid
        assert f"pid {holder.pid}" in err.value.message
        assert _snapshot_dir(tmp_path) == before
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
        holder.wait(timeout=30)
    with Engine.open(tmp_path) as engine:  # a stale lock file does not block a restart
        assert engine.bank_info("b").count == 4
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_in_memory_engines_take_no_lock() -> None:
    with Engine.open(None) as a, Engine.open(None) as b:
        a.create_bank("x", BankConfig(dim=2))
        assert b.bank_names() == []


def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017  (the store refuses the mode)
        Engine.open(tmp_path, synchronous="SOMETIMES")
    with Engine.open(tmp_path):
        pass


def test_storage_releases_the_lock_it_was_given(tmp_path: Path) -> None:
    store = Storage(tmp_path / "s.sqlite3", lock=DataDirLock.acquire(tmp_path))
    with pytest.raises(DataDirLockedError):
        DataDirLock.acquire(tmp_path)
    store.close()
    DataDirLock.acquire(tmp_path).release()
    lock = DataDirLock.acquire(tmp_path)
    lock.release()
    lock.release()  # idempotent
    assert not lock.held


# Stays in the default run (~8 s: two server starts): nothing else there checks the lock
# between a live server and an embedded client or a second server.
def test_a_served_data_dir_cannot_be_opened_by_a_client_or_another_server(tmp_path: Path) -> None:
    from lam_client import Client
    from lam_client.errors import Conflict
    from tests.harness import LamServer

    server = LamServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    server.start()
    try:
        with pytest.raises(DataDirLockedError) as err:
            Engine.open(tmp_path / "data")
        assert err.value.details["pid"] == server.pid
        with pytest.raises(Conflict) as client_err:
            Client(path=tmp_path / "data")
        assert client_err.value.code == "data_dir_locked" and client_err.value.status == 409
        # A second server on the same dir loads nothing and says why; the first one serves on.
        second = LamServer(data_dir=tmp_path / "data", log_path=tmp_path / "second.log")
        try:
            with pytest.raises(TimeoutError, match="load_failed"):
                second.start(timeout=120)  # fails as soon as it answers
            assert f"in use by pid {server.pid}" in (tmp_path / "second.log").read_text()
        finally:
            second.stop()
        server.wait_ready(timeout=5)
    finally:
        server.stop()
    with Engine.open(tmp_path / "data"):
        pass
