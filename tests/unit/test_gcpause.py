"""gcpause.gc_paused: the collector is off inside every pause, and after the last one ends
it is as it was before the first: overlapping pauses on threads, nesting, errors."""

from __future__ import annotations

import gc
import threading

import pytest

from lam_engine.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _restore_gc():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_nested_pauses_resume_only_at_the_outermost_end() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_inside_still_ends_the_pause() -> None:
    gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_on_threads_end_with_the_collector_on() -> None:
    """A first pause ends while a second, begun later, still runs: the collector stays off
    until the second ends (a plain disable/enable pair would turn it on under it)."""
    gc.enable()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with gc_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with gc_paused():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.isenabled())  # after the first pause ended

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [False]
    assert gc.isenabled()


def test_as_a_decorator_each_call_pauses_afresh() -> None:
    """`@gc_paused()` (Engine.upsert, the store route): a new pause per call, nested too."""
    gc.enable()
    seen: list[bool] = []

    @gc_paused()
    def f(depth: int) -> None:
        seen.append(gc.isenabled())
        if depth:
            f(depth - 1)

    f(2)
    f(0)
    assert seen == [False] * 4
    assert gc.isenabled()
