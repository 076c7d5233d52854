"""Shared benchmark helpers: timing, the machine's ceilings, tables, JSON and plots.

Every benchmark measures the machine's ceilings (GEMM GFLOP/s, read bandwidth) in the same
run as its own numbers, so ratios stay meaningful on a shared, noisy machine.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    """Wall-clock seconds per call: the best and median of `reps` calls after a warm-up."""

    best: float
    median: float
    reps: int


def die_with_parent() -> None:
    """`preexec_fn` for a benchmark's child server: it gets SIGTERM when the benchmark
    process dies, even by SIGKILL or a runner's timeout, so no orphaned server keeps
    loading the (shared, 2-core) machine while the next benchmark runs. Linux only."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def measure(
    fn: Callable[[], Any], *, min_time: float = 0.3, min_reps: int = 2, max_reps: int = 50
) -> Timing:
    """Time `fn` after one warm-up call, repeating until `min_time` seconds have passed."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (
        len(times) < min_reps or time.perf_counter() - start < min_time
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(best=min(times), median=statistics.median(times), reps=len(times))


def gemm_gflops(dtype: torch.dtype, size: int = 1024, min_time: float = 0.3) -> float:
    """GEMM rate of this machine for `dtype` (square size³ products), all torch threads."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    t = measure(lambda: a @ b, min_time=min_time)
    return 2 * size**3 / t.best / 1e9


def read_bandwidth(mbytes: int = 256, min_time: float = 0.3) -> float:
    """Read bandwidth in GB/s: the faster of a numpy and a torch sum over a large array."""
    n = mbytes * (1 << 20) // 4
    x = torch.ones(n, dtype=torch.float32)
    x_np = x.numpy()
    t_torch = measure(lambda: x.sum(), min_time=min_time)
    t_np = measure(lambda: x_np.sum(), min_time=min_time)
    return n * 4 / min(t_torch.best, t_np.best) / 1e9


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a markdown table."""

    def fmt(x: Any) -> str:
        if isinstance(x, float):
            if x != x:  # nan
                return "–"
            return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
        return str(x)

    lines = [f"\n### {title}\n", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(name: str, data: dict[str, Any], out_dir: Path | None = None) -> Path:
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**data, "loadavg_end": os.getloadavg()}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=_jsonable))
    print(f"wrote {path}")
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def save_plot(path: Path, draw: Callable[[Any], None], *, title: str) -> Path | None:
    """Draw with matplotlib (Agg) into `path`; skipped, with a note, if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    fig = plt.figure(figsize=(11, 6))
    draw(fig)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def unit_rows(n: int, d: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, d) random unit vectors (generated in blocks to bound the float32 temporaries)."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, d, dtype=dtype)
    step = 1 << 18
    for s in range(0, n, step):
        blk = torch.randn(min(step, n - s), d, generator=gen)
        out[s : s + step] = torch.nn.functional.normalize(blk, dim=1).to(dtype)
    return out
