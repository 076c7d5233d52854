"""Text banks: server-side embedding throughput next to the raw model's (the ceiling).

In one run, on the same texts:

* **raw encode**: the bundled MiniLM (`lam_engine.embed.load_embedder`) in this process,
  `embed` of the texts in the same batches the HTTP run sends: what the model alone does;
* **HTTP store**: `python -m service` (LAM_SYNCHRONOUS=FULL), a text bank, the texts stored
  through POST /v1/banks/{bank}/memories as `{"text": ...}` memories: embedding in the
  server's worker thread, the durable commit, the HTTP round trip;
* **query latency**: one-text queries (`texts`) against one-vector queries carrying the
  same embedding, both `steps: 0`, alternated: the median difference is what embedding
  adds to a query.

    python -m bench.bench_embed [--quick] [--n 1000] [--batch 100]

Writes bench/results/embed[_quick].json. Both sides share the machine's cores, so run it on
a quiet machine: on a shared one the ratio is still meaningful (same run, same load), the
absolute rates are not.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_http import Server  # noqa: E402
from bench.common import machine_info, print_table, write_json  # noqa: E402
from lam_engine.embed import MINILM, load_embedder  # noqa: E402

_WHO = ["the engineer", "my neighbour", "a tired student", "the old captain", "our team"]
_DID = ["repaired", "painted", "described", "forgot about", "photographed", "sold"]
_WHAT = ["the red bicycle", "a wooden boat", "the broken heater", "an ancient map", "the garden"]
_WHEN = ["yesterday", "last winter", "before dawn", "after the storm", "on Sunday", "at noon"]


def sentences(n: int) -> list[str]:
    """n distinct sentences of about 8-10 words (a typical note or chat message)."""
    combos = itertools.product(_WHO, _DID, _WHAT, _WHEN)
    out = [f"{a.capitalize()} {b} {c} {d}, number {i}." for i, (a, b, c, d) in enumerate(combos)]
    while len(out) < n:
        out += [f"{s} Again {len(out)}." for s in out[: n - len(out)]]
    return out[:n]


def raw_rate(texts: list[str], batch: int) -> float:
    embedder = load_embedder(MINILM)
    embedder.embed(texts[:batch])  # warm: first-call allocations
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        embedder.embed(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - t0)


def http_rate(c: httpx.Client, texts: list[str], batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        body = {"memories": [{"text": t} for t in texts[i : i + batch]]}
        c.post("/v1/banks/notes/memories", json=body).raise_for_status()
    return len(texts) / (time.perf_counter() - t0)


def query_latency(c: httpx.Client, probes: list[str]) -> tuple[float, float]:
    """Median seconds of a one-text query and of the same query as its vector."""
    text_s, vec_s = [], []
    for text in probes:
        vector = c.post("/v1/banks/notes/query", json={"texts": [text], "steps": 0})
        state = vector.json()["results"][0]["state"]  # the embedded, normalized cue
        for form, out in (({"texts": [text]}, text_s), ({"queries": [state]}, vec_s)):
            t0 = time.perf_counter()
            c.post("/v1/banks/notes/query", json={**form, "steps": 0}).raise_for_status()
            out.append(time.perf_counter() - t0)
    return statistics.median(text_s), statistics.median(vec_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 texts, 10 query probes")
    p.add_argument("--n", type=int, default=1000, help="texts to store")
    p.add_argument("--batch", type=int, default=100, help="texts per request / encode call")
    args = p.parse_args(argv)
    n = 200 if args.quick else args.n
    texts = sentences(n + 50)
    stored, probes, warm = texts[:n], texts[n : n + (10 if args.quick else 40)], texts[-1]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raw = raw_rate(stored, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", window_ms=2.0, synchronous="FULL")
        try:
            with httpx.Client(base_url=server.url, timeout=300.0) as c:
                c.post("/v1/banks", json={"name": "notes", "embedder": {"model": MINILM}})
                # The server loads its model on first use: not part of the timed run.
                c.post("/v1/banks/notes/memories", json={"memories": [{"text": warm}]})
                http = http_rate(c, stored, args.batch)
                t_text, t_vec = query_latency(c, probes)
        finally:
            server.stop()
    rows: list[list[Any]] = [
        ["raw MiniLM encode (in process)", raw, 1.0],
        ["HTTP store of text memories (FULL)", http, http / raw],
    ]
    print_table(f"embedding throughput, {n} texts, batches of {args.batch}",
                ["path", "texts/s", "ratio to raw"], rows)  # fmt: skip
    print_table("query latency (median, steps 0, one cue)", ["form", "ms"], [
        ["texts", t_text * 1e3], ["queries (same vector)", t_vec * 1e3],
        ["added by embedding", (t_text - t_vec) * 1e3],
    ])  # fmt: skip
    write_json("embed_quick" if args.quick else "embed", {
        "machine": machine_info(), "n": n, "batch": args.batch, "raw_texts_per_s": raw,
        "http_texts_per_s": http, "ratio": http / raw, "query_text_ms": t_text * 1e3,
        "query_vector_ms": t_vec * 1e3, "added_ms": (t_text - t_vec) * 1e3,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
