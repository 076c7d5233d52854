"""A pause of Python's cyclic garbage collector over code that makes many objects at once.

A bulk store or a load makes a few objects per row (ids, tuples for SQL, dict entries),
none of them cyclic garbage, and each allocation threshold crossed starts a collection
that scans every live object: with a large bank in memory, building one 5 000-row batch's
SQL tuples took 7× longer with the collector on. Reference counting still frees
everything as usual; the collector resumes when the last pause ends.

Counted, so that overlapping pauses (two banks stored at once, a load beside a store) end
with the collector as it was before the first: never left off, never re-enabled early.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
