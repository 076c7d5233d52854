"""The native pass against torch's passes and this machine's ceilings, side by side.

For float32 and bfloat16 banks of N unit rows and batches of B states: the native C pass
(lam_engine/kernels/native.py) and the torch passes it replaces (`LAM_NATIVE_KERNELS=0`'s
path), both through `model_b_pass`, for the final pass of a query (`need_out=False`: the
log-sum-exp and top-5, what `steps: 0` costs) and an update step (`need_out=True`, Ξᵀ p
too). The two are timed alternately, repetition by repetition, so the load of a shared
machine falls on both alike.

Ceilings, measured in the same run: read bandwidth (Ξ's bytes / time; the bound of a
B = 1 pass), the float32 GEMM rate (the faster of MKL and oneDNN on square 1024³
products), and the roofline of each case, min(GEMM rate, bandwidth × FLOP per byte).

    python -m bench.bench_native [--quick | --tiny]

Writes bench/results/native[_quick].json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_engine import onednn_gflops  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    gemm_gflops,
    machine_info,
    print_table,
    read_bandwidth,
    unit_rows,
    write_json,
)
from lam_engine.kernels import model_b_pass, native  # noqa: E402

BETA = 32.0
TOP_K = 5
SIZES = {  # (N, d, batches, repetitions)
    "full": (100_000, 384, (1, 4, 16, 32, 64), 9),
    "quick": (20_000, 384, (1, 16, 32), 5),
    "tiny": (2_000, 64, (1, 4), 3),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def paired(fns: dict[str, Any], reps: int) -> dict[str, float]:
    """Median seconds of each function, timed in alternation, each timed call right after an
    untimed one of the same function: torch's OpenMP threads spin-wait for a while after a
    parallel region, and would otherwise take a core from whatever runs next."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _pass(xi: torch.Tensor, v: torch.Tensor, need_out: bool, on: bool) -> Any:
    def run() -> Any:
        native.set_enabled(on)
        try:
            return model_b_pass(xi, v, BETA, top_k=TOP_K, need_out=need_out)
        finally:
            native.set_enabled(True)

    return run


def run(size: str) -> dict[str, Any]:
    n, d, batches, reps = SIZES[size]
    if not native.available():
        return {"available": False, "rows": []}
    read_gbs = read_bandwidth(min(256, max(8, n * d * 4 >> 20)))
    gflops = max(gemm_gflops(torch.float32), onednn_gflops())
    xi32 = unit_rows(n, d, seed=0)
    cues = unit_rows(max(batches), d, seed=1)
    rows = []
    for name, dtype in DTYPES.items():
        xi = xi32.to(dtype)
        nbytes = xi.numel() * xi.element_size()
        for b in batches:
            v = cues[:b]
            for need_out in (False, True):
                t = paired({"native": _pass(xi, v, need_out, True),
                            "torch": _pass(xi, v, need_out, False)}, reps)  # fmt: skip
                flop = 2.0 * n * d * b * (2 if need_out else 1)
                roof = min(gflops * 1e9, read_gbs * 1e9 * flop / nbytes)
                rows.append({
                    "dtype": name, "b": b, "need_out": need_out,
                    "native_ms": 1e3 * t["native"], "torch_ms": 1e3 * t["torch"],
                    "speedup": t["torch"] / t["native"],
                    "native_gbs": nbytes / t["native"] / 1e9,
                    "bw_fraction": nbytes / t["native"] / 1e9 / read_gbs,
                    "native_gflops": flop / t["native"] / 1e9,
                    "roofline_fraction": flop / t["native"] / roof,
                })  # fmt: skip
    return {"available": True, "n": n, "d": d, "read_gbs": read_gbs, "gemm_gflops": gflops,
            "threads": torch.get_num_threads(), "rows": rows}  # fmt: skip


def bf16_over_f32(res: dict[str, Any]) -> list[list[Any]]:
    by = {(r["dtype"], r["b"], r["need_out"]): r["native_ms"] for r in res["rows"]}
    return [
        [b, out, by[("float32", b, out)] / by[("bfloat16", b, out)]]
        for (dt, b, out) in by
        if dt == "float32" and ("bfloat16", b, out) in by
    ]


def report(res: dict[str, Any]) -> str:
    if not res["available"]:
        print("native pass not available on this machine: nothing to compare")
        return ""
    cols = ["dtype", "B", "Ξᵀp", "native ms", "torch ms", "native / torch speed",
            "GB/s", "of read bw", "GFLOP/s", "of roofline"]  # fmt: skip
    table = [
        [r["dtype"], r["b"], "yes" if r["need_out"] else "no (steps 0)", r["native_ms"],
         r["torch_ms"], r["speedup"], r["native_gbs"], r["bw_fraction"], r["native_gflops"],
         r["roofline_fraction"]]
        for r in res["rows"]
    ]  # fmt: skip
    text = print_table(
        f"Native pass vs torch passes: N={res['n']}, d={res['d']}, β={BETA}, top-{TOP_K}, "
        f"{res['threads']} threads; read bw {res['read_gbs']:.1f} GB/s, float32 GEMM "
        f"{res['gemm_gflops']:.0f} GFLOP/s (medians of alternated runs)",
        cols,
        table,
    )
    text += print_table(
        "bfloat16 over float32, native pass (speed ratio)",
        ["B", "Ξᵀp", "bf16 / f32 speed"],
        bf16_over_f32(res),
    )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    # The suite (`python -m bench --tiny`) passes --quick too: --tiny wins.
    parser.add_argument("--tiny", action="store_true", help="smoke sizes (seconds)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    res = run(size)
    report(res)
    name = "native" if size == "full" else f"native_{size}"
    path = write_json(name, {"machine": machine_info(), "size": size, **res}, args.out_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
