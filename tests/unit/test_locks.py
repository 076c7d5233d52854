"""RWLock: readers share, a writer excludes them, and `read(blocking=False)` refuses to wait."""

from __future__ import annotations

import threading

import pytest

from lam_engine.locks import LockBusy, RWLock


def test_a_non_blocking_read_refuses_while_a_writer_holds_or_awaits() -> None:
    lock = RWLock()
    with lock.read(blocking=False), lock.read(blocking=False):  # readers share
        waiting = threading.Event()
        done = threading.Event()

        def writer() -> None:
            waiting.set()
            with lock.write():
                done.set()

        t = threading.Thread(target=writer)
        t.start()
        assert waiting.wait(5)
        for _ in range(1000):  # until the writer is queued behind the two readers
            if lock._waiting_writers:
                break
            threading.Event().wait(0.001)
        with pytest.raises(LockBusy), lock.read(blocking=False):
            pass  # a waiting writer goes first: no new reader
        assert not done.is_set()
    t.join(5)
    assert done.is_set()
    with lock.read(blocking=False):  # free again
        pass
