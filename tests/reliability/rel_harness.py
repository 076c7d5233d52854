"""Helpers of the reliability tests and scripts (no pytest here).

`LamServer` (tests/harness, re-exported here for the scripts) runs the real service;
`figure` prints the one-line results the docs quote. The batch helpers give
every stored batch a unique id prefix and vectors derived from the ids, so a later scroll
tells which batches are present, complete, partial or corrupted.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.harness import REPO as REPO
from tests.harness import LamServer as LamServer
from tests.harness import free_port as free_port
from tests.harness.fixtures import ServerFactory as ServerFactory

STORE_FILE = "lam.sqlite3"  # lam_engine.engine.STORE_FILE, named here to skip the torch import


def batch_vectors(prefix: str, k: int, dim: int) -> np.ndarray:
    """Deterministic (k, dim) float32 vectors derived from the batch prefix."""
    seed = int.from_bytes(hashlib.sha256(prefix.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal((k, dim)).astype(np.float32)  # (k, d)


def batch_body(prefix: str, dim: int) -> dict[str, Any]:
    k = batch_size_of(prefix)
    xi = batch_vectors(prefix, k, dim)
    return {
        "memories": [
            {"id": f"{prefix}-{j}", "vector": xi[j].tolist(), "payload": {"batch": prefix, "j": j}}
            for j in range(k)
        ]
    }


def scroll_all(client: httpx.Client, bank: str, with_vectors: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, "with_vectors": with_vectors}
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"/v1/banks/{bank}/memories", params=params)
        r.raise_for_status()
        page = r.json()
        out.extend(page["memories"])
        cursor = page["next_cursor"]
        if not cursor:
            return out


@dataclass
class BatchAudit:
    """What a scroll shows about batches: complete, partial, or with a wrong vector/payload."""

    complete: set[str]
    partial: dict[str, int]
    corrupt: set[str]
    total: int


def batch_size_of(prefix: str) -> int:
    """Batches are named `...k<size>`; the size is read back from the prefix."""
    return int(prefix.rpartition("k")[2])


def audit_batches(records: Iterable[dict[str, Any]], dim: int) -> BatchAudit:
    by_prefix: dict[str, dict[int, dict[str, Any]]] = {}
    total = 0
    for rec in records:
        total += 1
        prefix, _, j = rec["id"].rpartition("-")
        by_prefix.setdefault(prefix, {})[int(j)] = rec
    complete: set[str] = set()
    partial: dict[str, int] = {}
    corrupt: set[str] = set()
    for prefix, rows in by_prefix.items():
        k = batch_size_of(prefix)
        if len(rows) != k or set(rows) != set(range(k)):
            partial[prefix] = len(rows)
            continue
        xi = batch_vectors(prefix, k, dim)
        for j, rec in rows.items():
            vec = rec.get("vector")
            if vec is not None and not np.array_equal(np.asarray(vec, np.float32), xi[j]):
                corrupt.add(prefix)
            if rec.get("payload") != {"batch": prefix, "j": j}:
                corrupt.add(prefix)
        complete.add(prefix)
    return BatchAudit(complete, partial, corrupt, total)


def sqlite_check(data_dir: Path) -> tuple[str, int]:
    """(PRAGMA integrity_check, size of the -wal file or -1) of a store no process holds open."""
    db = data_dir / STORE_FILE
    wal = Path(str(db) + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else -1
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return str(result), wal_size


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def figure(name: str, **values: Any) -> str:
    """One greppable line for CI logs: `FIGURE name k=v ...`, printed and returned."""
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    line = f"FIGURE {name} " + " ".join(parts)
    print(line, flush=True)
    return line


def chunks(seq: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
