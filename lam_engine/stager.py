"""Appends staged beside their commit: an all-new batch's vectors are copied into its bank's
tensor (past the last row, where no reader looks: MemoryBank.stage) on a worker thread while
the store writes and fsyncs the same batch. SQLite and torch's copy both release the GIL,
so on two cores the copy, and the tensor's occasional growth, cost no time of their own.
The batch becomes the bank's memories only after its commit (MemoryBank.apply)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .bank import MemoryBank
from .bulk import Staged

log = logging.getLogger(__name__)

# Below this many bytes the hand-off to the worker costs more than the copy it hides.
MIN_STAGE_BYTES = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:  # one thread for the process: stages are short and rarely overlap
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lam-stage")
        return _pool


def start(bank: MemoryBank, vectors: np.ndarray) -> Future[Staged] | None:
    """Stage `vectors` (all new ids) into `bank` in the background; None when not worth it
    (or the bank cannot: a sharded one). The caller holds the bank's writer lock until
    `finish` returns."""
    if vectors.nbytes < MIN_STAGE_BYTES or not bank.stages_appends:
        return None
    return _worker().submit(bank.stage, vectors)


def finish(future: Future[Staged] | None) -> Staged | None:
    """Wait for a stage; a failed one is logged and left to `apply`, which redoes the copy
    (the batch is committed by then: it must still be applied)."""
    if future is None:
        return None
    try:
        return future.result()
    except Exception:
        log.warning("staging an append failed; the apply copies it instead", exc_info=True)
        return None
