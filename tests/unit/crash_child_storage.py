"""Child program of the storage crash and reopen tests (run with sys.executable).

    crash_child_storage.py crash <db> <seed> <first_batch> <dim>
        open the store, print "ready", wait for a line on stdin, then store batches
        forever, printing each acknowledged batch number
    crash_child_storage.py dump <db> <out.json>
        write every bank of the store (vectors as raw float32 hex) to a JSON file
    crash_child_storage.py readonly <db>
        try reads and writes on a read-only store; print what happened as JSON
    crash_child_storage.py migrate <db>
        print "ready", wait for a line on stdin, then open the store (which migrates an
        older one) and print what the migration did as JSON

The child imports lam_engine.store.storage without running lam_engine/__init__.py (which
pulls in torch): a process that starts in 0.1 s instead of 2 s is what lets the crash
test run many trials. The storage module itself is the real one.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

CRASH_BANK = "crash"


def batch_memories(seed: int, batch: int, dim: int) -> tuple[list[str], np.ndarray, list[dict]]:
    """The batch `batch` of a crash run: 20-200 memories, reproducible from (seed, batch)."""
    rng = np.random.default_rng([seed, batch])
    n = int(rng.integers(20, 201))
    ids = [f"b{batch}-{i}" for i in range(n)]
    xi = rng.standard_normal((n, dim), dtype=np.float32)  # (n, d)
    payloads = [{"batch": batch, "i": i} for i in range(n)]
    return ids, xi, payloads


def _import_storage() -> Any:
    repo = Path(__file__).resolve().parents[2]
    pkg = types.ModuleType("lam_engine")
    pkg.__path__ = [str(repo / "lam_engine")]
    sys.modules["lam_engine"] = pkg
    from lam_engine.store import storage

    return storage


def _crash(db: str, seed: int, first: int, dim: int) -> None:
    storage = _import_storage()
    store = storage.Storage(db)
    if CRASH_BANK not in {b.name for b in store.list_banks()}:
        # Writers start ahead, several on one fresh store: another may create it first.
        with contextlib.suppress(storage.BankExistsError):
            store.create_bank(CRASH_BANK, {"dim": dim}, "2025-01-01T00:00:00Z")
    print("ready", flush=True)
    sys.stdin.readline()  # the parent starts its kill timer when it sends this line
    batch = first
    while True:
        ids, xi, payloads = batch_memories(seed, batch, dim)
        store.upsert(CRASH_BANK, ids, xi, payloads)
        print(batch, flush=True)
        batch += 1


def _dump(db: str, out: str) -> None:
    storage = _import_storage()
    store = storage.Storage(db)
    banks = []
    for rec in store.list_banks():
        loaded = store.load(rec.name)
        banks.append(
            {
                "name": rec.name,
                "config": rec.config,
                "created_at": rec.created_at,
                "ids": loaded.ids,
                "seqs": loaded.seqs.tolist(),
                "dtype": str(loaded.vectors.dtype),
                "shape": list(loaded.vectors.shape),
                "vectors_hex": loaded.vectors.astype("<f4").tobytes().hex(),
                "payloads": loaded.payloads,
            }
        )
    store.close()
    Path(out).write_text(json.dumps(banks))


def _readonly(db: str) -> None:
    storage = _import_storage()
    from lam_engine.errors import LamError

    report: dict[str, Any] = {}
    store = storage.Storage(db)
    report["read_only"] = store.read_only
    report["banks"] = [b.name for b in store.list_banks()]
    report["count"] = len(store.load(report["banks"][0]).ids)
    attempts = {
        "upsert": lambda: store.upsert(
            report["banks"][0], ["new"], np.ones((1, 4), np.float32), [None]
        ),
        "create_bank": lambda: store.create_bank("other", {"dim": 4}, "t"),
        "delete": lambda: store.delete(report["banks"][0], ["m0"]),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            report[name] = None
        except LamError as exc:
            report[name] = {"code": exc.code, "message": exc.message}
    report["count_after"] = len(store.load(report["banks"][0]).ids)
    store.close()
    print(json.dumps(report))


def _migrate(db: str) -> None:
    storage = _import_storage()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent starts its kill timer when it sends this line
    store = storage.Storage(db)
    print(json.dumps(store.migration), flush=True)
    store.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "crash":
        _crash(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "dump":
        _dump(args[0], args[1])
    elif mode == "readonly":
        _readonly(args[0])
    elif mode == "migrate":
        _migrate(args[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
