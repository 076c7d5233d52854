"""Where one exact query's time goes, layer by layer, next to the machine's ceiling.

For a float32 bank of N unit rows (d = 384 by default, the peer benchmark's workload) and
batches of B cues, all in one run and on the same tensors, for 1 torch thread and for the
default thread count:

* ceiling: the time to read Ξ once at the measured read bandwidth (a B = 1 pass can do no
  better), and the raw score GEMM v Ξᵀ (oneDNN, what the pass runs), in float32 and in the
  half dtypes (what a half-precision shortlist copy of Ξ could read instead);
* the pass of a `steps: 0` query (`model_b_pass`, top-5 and log-sum-exp, no Ξᵀ p);
* `Engine.query(steps=0)`: the pass plus cue preparation, energies, weights, result objects;
* the HTTP boundary's own CPU: `parse_query` of the JSON body (orjson, pydantic, numpy) and
  `to_dict` + orjson of the answer, as the route does them.

Ratios printed beside the times: pass / raw GEMM (the pass's own overhead), engine / pass
(the engine's), ceiling / pass (fraction of read bandwidth at B = 1).

On a 2-core machine shared with other jobs, the thread-count columns are the point: an
OpenMP team of 2 waits at every barrier for a thread the OS has descheduled, so under load
one thread can beat two. Numbers swing by 2× between runs there: compare within a run.

    python -m bench.bench_hotpath [--quick | --tiny] [--n N]

Writes bench/results/hotpath[_quick].json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    machine_info,
    measure,
    print_table,
    read_bandwidth,
    unit_rows,
    write_json,
)
from lam_engine.bank import PreparedBatch  # noqa: E402
from lam_engine.config import BankConfig  # noqa: E402
from lam_engine.engine import Engine  # noqa: E402
from lam_engine.inputs import QueryInput  # noqa: E402
from lam_engine.kernels import model_b_pass  # noqa: E402
from lam_engine.kernels.cpu import mm_nt  # noqa: E402
from service.routes.query import parse_query  # noqa: E402

BETA = 32.0
TOP_K = 5
SIZES = {  # (N, d, batches, min_time per measurement)
    "full": (100_000, 384, (1, 16), 0.5),
    "quick": (20_000, 384, (1, 16), 0.2),
    "tiny": (2_000, 64, (1, 4), 0.02),
}


def make_engine(xi: torch.Tensor) -> Engine:
    """An in-memory engine with one normalizing bank holding xi (no SQLite: only the query
    path is timed)."""
    n, d = xi.shape
    engine = Engine.open(None, default_device="cpu")
    engine.create_bank("bench", BankConfig(dim=d, beta=BETA, normalize=True))
    ids = [f"m{i}" for i in range(n)]
    engine._slot("bench").bank.apply(
        PreparedBatch(ids, ids, xi.numpy(), [None] * n), np.arange(1, n + 1)
    )
    return engine


def ms(fn: Any, min_time: float) -> float:
    return 1000 * measure(fn, min_time=min_time).median


def layers(engine: Engine, xi: torch.Tensor, cues: np.ndarray, min_time: float) -> dict[str, float]:
    """Median milliseconds of each layer for one batch of cues."""
    slot = engine._slot("bench")
    bank_xi, bias = slot.bank.xi, slot.bank.bias
    v = torch.from_numpy(cues)
    v_half = {dt: v.to(dt) for dt in (torch.float16, torch.bfloat16)}
    xi_half = {dt: xi.to(dt) for dt in (torch.float16, torch.bfloat16)}
    q = QueryInput.build(cues, steps=0, top_k=TOP_K, with_payload=False)
    body = orjson.dumps(
        {"queries": cues, "top_k": TOP_K, "steps": 0, "with_payload": False},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    answer = engine.query("bench", q)
    return {
        "gemm_f32": ms(lambda: mm_nt(v, bank_xi), min_time),
        "gemm_f16": ms(lambda: v_half[torch.float16] @ xi_half[torch.float16].T, min_time),
        "gemm_bf16": ms(lambda: v_half[torch.bfloat16] @ xi_half[torch.bfloat16].T, min_time),
        "pass": ms(
            lambda: model_b_pass(bank_xi, v, BETA, bias=bias, top_k=TOP_K, need_out=False),
            min_time,
        ),
        "engine": ms(lambda: engine.query("bench", q), min_time),
        "parse": ms(lambda: parse_query("application/json", body, {}, 1 << 16, 100), min_time),
        "encode": ms(
            lambda: orjson.dumps(answer.to_dict(arrays=True), option=orjson.OPT_SERIALIZE_NUMPY),
            min_time,
        ),
    }


def run(size: str, n: int | None) -> dict[str, Any]:
    n0, d, batches, min_time = SIZES[size]
    n = n or n0
    xi = unit_rows(n, d, seed=0)
    cues = np.ascontiguousarray(unit_rows(max(batches), d, seed=1).numpy())
    engine = make_engine(xi)
    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads})
    rows: list[dict[str, Any]] = []
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            read_gbs = read_bandwidth(min(256, max(8, n * d * 4 >> 20)), min_time)
            for b in batches:
                t = layers(engine, xi, cues[:b], min_time)
                rows.append({
                    "threads": threads, "b": b, "read_gbs": read_gbs,
                    "read_ms": n * d * 4 / read_gbs / 1e6, **t,
                })  # fmt: skip
    finally:
        torch.set_num_threads(default_threads)
        engine.close()
    return {"n": n, "d": d, "beta": BETA, "top_k": TOP_K, "rows": rows}


def report(res: dict[str, Any]) -> str:
    cols = ["threads", "B", "read Ξ at bw (ms)", "GEMM f32", "GEMM f16", "GEMM bf16",
            "pass (steps 0)", "Engine.query", "parse JSON", "encode answer",
            "pass / GEMM", "engine / pass", "bandwidth fraction (B = 1)"]  # fmt: skip
    table = [
        [r["threads"], r["b"], r["read_ms"], r["gemm_f32"], r["gemm_f16"], r["gemm_bf16"],
         r["pass"], r["engine"], r["parse"], r["encode"], r["pass"] / r["gemm_f32"],
         r["engine"] / r["pass"], r["read_ms"] / r["pass"] if r["b"] == 1 else "–"]
        for r in res["rows"]
    ]  # fmt: skip
    return print_table(
        f"Hot path of a steps-0 query, ms (median): N={res['n']}, d={res['d']}, float32, "
        f"β={res['beta']}, top-{res['top_k']}",
        cols,
        table,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true")
    group.add_argument("--tiny", action="store_true", help="smoke sizes (seconds)")
    parser.add_argument("--n", type=int, default=None, help="memories (default per size)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    res = {"machine": machine_info(), "size": size, **run(size, args.n)}
    res["markdown"] = report(res)
    write_json("hotpath" if size == "full" else "hotpath_quick", res, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
