"""Dense Model B retrieval against the machine's ceilings and against peer kernels.

For memories Ξ (N × d, unit rows) in float32 and bfloat16 and batches of B queries, all in
one run and on the same tensors:

* ceilings: GEMM GFLOP/s per dtype and read bandwidth (GB/s), measured at start and end.
  The float32 GEMM ceiling is the faster of torch's `mm` (MKL, which on AMD CPUs runs well
  below the machine's rate) and oneDNN's GEMM (what the engine's float32 pass uses);
* peers: raw `torch.nn.functional.scaled_dot_product_attention` (out only) and the naive
  two-matmul softmax(β v Ξᵀ) Ξ;
* ours: `model_b_pass` without top-k (every descent step but the last), with top-5, the
  final pass of a query (top-5 and log-sum-exp, no Ξᵀ p: `need_out=False`), and
  `Engine.query` (the full path: validation, steps=1 = one update pass plus the final pass,
  energy, result objects).

Fractions of the ceiling: a pass does 4·B·N·d flops (two GEMMs; the final pass 2·B·N·d),
compared with the GEMM rate for B > 1; for B = 1 it must read Ξ once (N·d·itemsize
bytes), compared with the read bandwidth. The engine bank is filled directly (no SQLite):
only the query path is timed.

    python -m bench.bench_engine [--quick]

Writes bench/results/engine[_quick].json and .png.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    gemm_gflops,
    machine_info,
    measure,
    print_table,
    read_bandwidth,
    save_plot,
    unit_rows,
    write_json,
)
from lam_engine.bank import PreparedBatch  # noqa: E402
from lam_engine.config import BankConfig  # noqa: E402
from lam_engine.engine import Engine  # noqa: E402
from lam_engine.kernels import model_b_pass  # noqa: E402
from lam_engine.kernels.cpu import mm_nt  # noqa: E402

BETA = 8.0
TOP_K = 5
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# The naive peer materializes (B, N) scores: skipped above this many bytes.
NAIVE_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class Sizes:
    dims: tuple[int, ...]
    ns: tuple[int, ...]
    batches: tuple[int, ...]
    max_elements: int  # skip (N, d) with N·d above this: too big/slow for the time budget
    min_time: float
    # The ceilings' GEMM side and read size: a 1024³ bfloat16 GEMM takes seconds on a CPU
    # without bf16 units (≈ 40 s for the start and end ceilings of one run on a shared
    # 2-core box), more than the whole tiny run is worth.
    gemm_size: int = 1024
    read_mbytes: int = 256


FULL = Sizes((64, 384, 768), (10_000, 100_000, 1_000_000), (1, 32, 256), 10**8, 0.4)
QUICK = Sizes((32, 128), (3000, 20_000), (1, 32), 10**8, 0.1)
TINY = Sizes((16,), (500,), (1, 4), 10**8, 0.01, gemm_size=128, read_mbytes=16)


def build_engine(xi: torch.Tensor, dtype: str) -> tuple[Engine, str]:
    """An in-memory Engine whose bank holds exactly `xi` (filled without the SQLite store)."""
    engine = Engine.open(None, default_device="cpu")
    n, d = xi.shape
    engine.create_bank("bench", BankConfig(dim=d, beta=BETA, dtype=dtype))  # type: ignore[arg-type]
    slot = engine._slot("bench")
    ids = [f"m{i}" for i in range(n)]
    slot.bank.apply(PreparedBatch(ids, ids, xi.numpy(), [None] * n), np.arange(1, n + 1))
    return engine, "bench"


def naive_pass(xi: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = BETA * (v @ xi.T)  # (B, N)
    return torch.softmax(logits, dim=1) @ xi, torch.logsumexp(logits.float(), dim=1)


def onednn_gflops(size: int = 1024, min_time: float = 0.3) -> float:
    """float32 GEMM rate through the engine's GEMM (oneDNN when available)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    t = measure(lambda: mm_nt(a, b), min_time=min_time)
    return 2 * size**3 / t.best / 1e9


def gemm_ceilings(size: int = 1024) -> dict[str, float]:
    rates = {name: gemm_gflops(dt, size) for name, dt in DTYPES.items()}
    rates["float32_mm"] = rates["float32"]
    rates["float32_onednn"] = onednn_gflops(size)
    rates["float32"] = max(rates["float32_mm"], rates["float32_onednn"])
    return rates


def run(sizes: Sizes, seed: int) -> dict[str, Any]:
    info = machine_info()
    ceil_start = gemm_ceilings(sizes.gemm_size)
    bw_start = read_bandwidth(sizes.read_mbytes)
    print(f"ceilings at start: GEMM {ceil_start} GFLOP/s, read {bw_start:.1f} GB/s", flush=True)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for n in sizes.ns:
        for d in sizes.dims:
            if n * d > sizes.max_elements:
                skipped.append(f"N={n}, d={d}")
                continue
            xi32 = unit_rows(n, d, seed)
            for dname, dt in DTYPES.items():
                engine, bank = build_engine(xi32, dname)
                xi = engine._slot(bank).bank.xi  # the engine's own tensor, in its dtype
                for b in sizes.batches:
                    rows.append(_one(engine, bank, xi, n, d, b, dname, dt, seed, sizes.min_time))
                engine.close()
                del engine, xi
            del xi32
    ceil_end = gemm_ceilings(sizes.gemm_size)
    bw_end = read_bandwidth(sizes.read_mbytes)
    ceil = {k: (ceil_start[k] + ceil_end[k]) / 2 for k in ceil_start}
    bw = (bw_start + bw_end) / 2
    for r in rows:
        _fractions(r, ceil[r["dtype"]], bw)
    return {
        "machine": info,
        "sizes": sizes.__dict__,
        "beta": BETA,
        "top_k": TOP_K,
        "ceilings": {
            "gemm_gflops_start": ceil_start,
            "gemm_gflops_end": ceil_end,
            "read_gbs_start": bw_start,
            "read_gbs_end": bw_end,
            "gemm_gflops": ceil,
            "read_gbs": bw,
        },
        "skipped": skipped,
        "rows": rows,
    }


def _one(
    engine: Engine,
    bank: str,
    xi: torch.Tensor,
    n: int,
    d: int,
    b: int,
    dname: str,
    dt: torch.dtype,
    seed: int,
    min_time: float,
) -> dict[str, Any]:
    v = unit_rows(b, d, seed + 1 + b)
    v_np = v.numpy()
    q = v.to(dt).view(1, 1, b, d)
    kv = xi.view(1, 1, n, d)
    t: dict[str, Any] = {}
    sdpa = torch.nn.functional.scaled_dot_product_attention
    t["sdpa"] = measure(lambda: sdpa(q, kv, kv, scale=BETA), min_time=min_time)
    if b * n * 4 <= NAIVE_MAX_BYTES:
        v_dt = v.to(dt)
        t["naive"] = measure(lambda: naive_pass(xi, v_dt), min_time=min_time)
    t["pass"] = measure(lambda: model_b_pass(xi, v, BETA), min_time=min_time)
    t["pass_topk"] = measure(lambda: model_b_pass(xi, v, BETA, top_k=TOP_K), min_time=min_time)
    t["final"] = measure(
        lambda: model_b_pass(xi, v, BETA, top_k=TOP_K, need_out=False), min_time=min_time
    )
    t["engine"] = measure(lambda: engine.query(bank, v_np, top_k=TOP_K), min_time=min_time)
    row: dict[str, Any] = {"dtype": dname, "n": n, "d": d, "b": b}
    for name, tm in t.items():
        row[f"{name}_s"] = tm.best
        row[f"{name}_median_s"] = tm.median
        row[f"{name}_qps"] = b / tm.best
    print(
        f"{dname:8s} N={n:>8d} d={d:>4d} B={b:>4d}  "
        + "  ".join(f"{k} {b / tm.best:8.1f} q/s" for k, tm in t.items()),
        flush=True,
    )
    return row


def _fractions(r: dict[str, Any], gflops: float, gbs: float) -> None:
    n, d, b = r["n"], r["d"], r["b"]
    itemsize = 4 if r["dtype"] == "float32" else 2
    # (reads of Ξ, GEMMs) per timed call; Engine.query with steps=1 is one update pass and
    # one final pass.
    work = {"final": (1, 1), "engine": (2, 3)}
    for name in ("sdpa", "naive", "pass", "pass_topk", "final", "engine"):
        if f"{name}_s" not in r:
            continue
        reads, gemms = work.get(name, (1, 2))
        secs = r[f"{name}_s"]
        if b == 1:
            r[f"{name}_ceiling"] = reads * n * d * itemsize / secs / 1e9 / gbs
        else:
            r[f"{name}_ceiling"] = gemms * 2 * b * n * d / secs / 1e9 / gflops
        r[f"{name}_vs_sdpa"] = r["sdpa_s"] / secs
    # The query's rate against its two passes timed alone (1.0 = no overhead on top).
    r["engine_vs_passes"] = (r["pass_s"] + r["final_s"]) / r["engine_s"]


def report(res: dict[str, Any]) -> str:
    c = res["ceilings"]
    g = c["gemm_gflops"]
    head = (
        f"Ceilings (mean of start/end): GEMM float32 {g['float32']:.0f} (torch.mm "
        f"{g['float32_mm']:.0f}, oneDNN {g['float32_onednn']:.0f}), bfloat16 "
        f"{g['bfloat16']:.0f} GFLOP/s; read {c['read_gbs']:.1f} GB/s. "
        f"Load average start {res['machine']['loadavg_start'][0]:.1f}."
    )
    print(head)
    cols = [
        "dtype", "N", "d", "B", "SDPA q/s", "pass q/s", "pass+top-k q/s", "final q/s",
        "Engine.query q/s", "pass/SDPA", "pass+top-k/SDPA", "final/SDPA", "query/SDPA",
        "query/(pass+final)", "pass % ceiling", "final % ceil.", "query % ceil.", "naive/SDPA",
    ]  # fmt: skip
    table = []
    for r in res["rows"]:
        table.append(
            [
                r["dtype"], r["n"], r["d"], r["b"], r["sdpa_qps"], r["pass_qps"],
                r["pass_topk_qps"], r["final_qps"], r["engine_qps"], r["pass_vs_sdpa"],
                r["pass_topk_vs_sdpa"], r["final_vs_sdpa"], r["engine_vs_sdpa"],
                r["engine_vs_passes"], 100 * r["pass_ceiling"], 100 * r["final_ceiling"],
                100 * r["engine_ceiling"], r.get("naive_vs_sdpa", math.nan),
            ]
        )  # fmt: skip
    text = print_table("Dense Model B (ceiling: GEMM for B>1, read bandwidth for B=1)", cols, table)
    bf = _bf16_speedups(res["rows"])
    text2 = print_table(
        "bfloat16 speed-up over float32 (same N, d, B)",
        ["N", "d", "B", "pass", "pass+top-k", "final", "Engine.query", "SDPA"],
        bf,
    )
    if res["skipped"]:
        print("skipped (size/time budget):", "; ".join(res["skipped"]))
    return head + "\n" + text + "\n" + text2


def _bf16_speedups(rows: list[dict[str, Any]]) -> list[list[Any]]:
    by = {(r["dtype"], r["n"], r["d"], r["b"]): r for r in rows}
    out = []
    for (dt, n, d, b), r in by.items():
        f = by.get(("float32", n, d, b))
        if dt != "bfloat16" or f is None:
            continue
        out.append(
            [n, d, b]
            + [f[f"{k}_s"] / r[f"{k}_s"] for k in ("pass", "pass_topk", "final", "engine", "sdpa")]
        )
    return out


def plot(res: dict[str, Any], path: Path) -> None:
    def draw(fig: Any) -> None:
        for i, dt in enumerate(DTYPES):
            ax = fig.add_subplot(1, 2, i + 1)
            rs = [r for r in res["rows"] if r["dtype"] == dt]
            labels = [f"N={r['n']:.0e}\nd={r['d']}\nB={r['b']}" for r in rs]
            x = np.arange(len(rs))
            for j, (key, name) in enumerate(
                [("sdpa", "raw SDPA"), ("pass", "pass"), ("pass_topk", "pass+top-k"),
                 ("final", "final pass"), ("engine", "Engine.query"), ("naive", "naive")]
            ):  # fmt: skip
                y = [r.get(f"{key}_qps", np.nan) for r in rs]
                ax.bar(x + (j - 2.5) * 0.14, y, width=0.14, label=name)
            ax.set_yscale("log")
            ax.set_xticks(x, labels, fontsize=6)
            ax.set_ylabel("queries / s")
            ax.set_title(dt)
            ax.legend(fontsize=7)

    save_plot(path, draw, title="Dense Model B retrieval rate (same run, same tensors)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--tiny", action="store_true", help="CI smoke sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    res = run(TINY if args.tiny else QUICK if args.quick else FULL, args.seed)
    res["markdown"] = report(res)
    res["wall_s"] = time.perf_counter() - t0
    name = "engine_quick" if args.quick else "engine"
    write_json(name, res, args.out_dir)
    plot(res, args.out_dir / f"{name}.png")
    print(f"bench_engine done in {res['wall_s']:.0f} s (pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
