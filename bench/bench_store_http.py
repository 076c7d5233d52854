"""Bulk store over HTTP with durable commits: JSON vs application/x-npy, next to the store's floor.

Starts `python -m service` with LAM_SYNCHRONOUS=FULL (every acknowledged batch fsync'ed),
a fresh one with an empty store for each path, creates a d-dimensional bank and stores M
memories in batches through POST
/v1/banks/{bank}/memories, once with JSON bodies (ids + vectors + payloads) and once with
.npy bodies (vectors only, content-addressed ids), from one client, then with the SDK's
`Client.upload` of the same vectors (vectors alone: it sends .npy bodies). In the same run, the
floor: `Storage.upsert` of the same batches in-process (SQLite transaction + fsync, no
HTTP, no engine), a raw sqlite3 `executemany` of the same blobs (the peer: what any
SQLite-backed store pays at least), and `Storage.upsert` of the rows the .npy path
stores (content ids, no payloads: the store's share of the .npy row).

    python -m bench.bench_store_http [--quick]

Writes bench/results/store_http[_quick].json.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_http import Server, npy_bytes  # noqa: E402
from bench.common import RESULTS, machine_info, print_table, write_json  # noqa: E402
from lam_client import Client  # noqa: E402
from lam_engine.store import Storage  # noqa: E402


def batches(m: int, d: int, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((min(batch, m - s), d), dtype=np.float32) for s in range(0, m, batch)
    ]


def http_store(url: str, bank: str, parts: list[np.ndarray], fmt: str) -> float:
    """Seconds to store every batch (bodies are built before the clock starts)."""
    if fmt == "json":
        bodies, start = [], 0
        for x in parts:
            mem = [
                {"id": f"{bank}-{start + i}", "vector": row.tolist(), "payload": {"i": start + i}}
                for i, row in enumerate(x)
            ]
            bodies.append((orjson.dumps({"memories": mem}), "application/json"))
            start += len(x)
    else:
        bodies = [(npy_bytes(x), "application/x-npy") for x in parts]
    with httpx.Client(base_url=url, timeout=600) as c:
        r = c.post("/v1/banks", json={"name": bank, "dim": parts[0].shape[1]})
        r.raise_for_status()
        t0 = time.perf_counter()
        for body, ctype in bodies:
            r = c.post(f"/v1/banks/{bank}/memories", content=body,
                       headers={"content-type": ctype})  # fmt: skip
            r.raise_for_status()
        return time.perf_counter() - t0


def sdk_upload(url: str, bank: str, parts: list[np.ndarray]) -> float:
    """Seconds for `Client.upload` of the same vectors (no ids: the SDK sends .npy bodies)."""
    x = np.concatenate(parts)
    with Client(url, timeout=600) as c:
        c.create_bank(bank, dim=x.shape[1])
        t0 = time.perf_counter()
        c.upload(bank, x, batch_size=len(parts[0]), progress=False)
        return time.perf_counter() - t0


def storage_store(path: Path, parts: list[np.ndarray], content_ids: bool = False) -> float:
    """`content_ids`: the rows of the .npy path (SHA-256 hex ids, no payloads, all new)."""
    s = Storage(path / "lam.sqlite3", synchronous="FULL")
    s.create_bank("floor", {"dim": parts[0].shape[1]}, "2026-01-01T00:00:00Z")
    spent, start = 0.0, 0
    for x in parts:
        payloads: list[dict[str, Any] | None]
        if content_ids:
            ids = [hashlib.sha256(row.tobytes()).hexdigest() for row in x]
            payloads = [None] * len(x)
        else:
            ids = [f"m{start + i}" for i in range(len(x))]
            payloads = [{"i": start + i} for i in range(len(x))]
        t0 = time.perf_counter()
        s.upsert("floor", ids, x, payloads, stored={})  # all new, as the engine knows
        spent += time.perf_counter() - t0
        start += len(x)
    s.close()
    return spent


def raw_sqlite(path: Path, parts: list[np.ndarray]) -> float:
    conn = sqlite3.connect(path / "raw.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE m (id TEXT PRIMARY KEY, vector BLOB, payload TEXT)")
    spent, start = 0.0, 0
    for x in parts:
        rows = [(f"m{start + i}", x[i].tobytes(), f'{{"i": {start + i}}}') for i in range(len(x))]
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO m VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
        spent += time.perf_counter() - t0
        start += len(x)
    conn.close()
    return spent


def run(m: int, d: int, batch: int, seed: int) -> dict[str, Any]:
    parts = batches(m, d, batch, seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lam-bench-store-") as tmp:
        root = Path(tmp)
        # A fresh server and store for each path, as for the floors below: each path stores
        # its M rows from an empty store (before schema version 6 the store-wide id index
        # made a path run after another's rows slower: docs/performance.md, tenth pass).
        for k, (name, store) in enumerate((
            ("HTTP npy", lambda url: http_store(url, "store-npy", parts, "npy")),
            ("HTTP json", lambda url: http_store(url, "store-json", parts, "json")),
            ("SDK upload (vectors only: .npy bodies)",
             lambda url: sdk_upload(url, "store-sdk", parts)),
        )):  # fmt: skip
            (root / f"srv{k}").mkdir()
            srv = Server(root / f"srv{k}", 2.0, synchronous="FULL")
            try:
                secs = store(srv.url)
            finally:
                srv.stop()
            rows.append({"path": name, "seconds": secs, "vectors_per_s": m / secs})
        for k, (name, fn) in enumerate((
            ("Storage.upsert (in-process)", storage_store),
            ("raw sqlite3 executemany", raw_sqlite),
            ("Storage.upsert, content ids, no payloads (.npy rows)",
             lambda p, x: storage_store(p, x, content_ids=True)),
        )):  # fmt: skip
            sub = root / f"floor{k}"
            sub.mkdir()
            secs = fn(sub, parts)
            rows.append({"path": name, "seconds": secs, "vectors_per_s": m / secs})
    floor = next(r for r in rows if r["path"] == "Storage.upsert (in-process)")["vectors_per_s"]
    for r in rows:
        r["vs_storage"] = r["vectors_per_s"] / floor
    return {"machine": machine_info(), "m": m, "d": d, "batch": batch,
            "synchronous": "FULL", "rows": rows}  # fmt: skip


def report(res: dict[str, Any]) -> str:
    return print_table(
        f"Bulk store, {res['m']:,} × d={res['d']} float32, batches of {res['batch']:,}, "
        "synchronous=FULL",
        ["path", "seconds", "vectors/s", "÷ Storage.upsert"],
        [[r["path"], r["seconds"], r["vectors_per_s"], r["vs_storage"]] for r in res["rows"]],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M ≤ 20 000")
    parser.add_argument("--m", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    m = min(args.m, 20_000) if args.quick else args.m
    res = run(m, args.d, args.batch, args.seed)
    res["markdown"] = report(res)
    write_json("store_http_quick" if args.quick else "store_http", res, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
