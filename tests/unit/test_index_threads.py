"""serial_search: a small FAISS search runs on its thread alone, and nothing else changes."""

from __future__ import annotations

import threading

import faiss

from lam_engine.index.runtime import SERIAL_SEARCH_MAX_BATCH, serial_search


def test_serial_search_is_per_thread_and_restored() -> None:
    before = faiss.omp_get_max_threads()
    seen: dict[str, int] = {}
    inside = threading.Event()
    done = threading.Event()

    def small() -> None:
        with serial_search(1):
            seen["inside"] = faiss.omp_get_max_threads()
            inside.set()
            done.wait(10)
        seen["after"] = faiss.omp_get_max_threads()

    t = threading.Thread(target=small)
    t.start()
    inside.wait(10)
    seen["other thread"] = faiss.omp_get_max_threads()  # this thread, meanwhile
    done.set()
    t.join()
    assert seen["inside"] == 1
    assert seen["other thread"] == before
    assert faiss.omp_get_max_threads() == before
    with serial_search(SERIAL_SEARCH_MAX_BATCH):  # a large batch keeps the team
        assert faiss.omp_get_max_threads() == before
