"""Benchmark of the FAISS candidate prefilter against exact dense Model B retrieval.

For random unit-norm banks xi (N × d) and β ∈ {1, 8, 32}, for each prefilter kind
(flat / ivf / hnsw) and k ∈ {32, 256}: build time, query time at B=1 and B=32 (search +
exact softmax over the candidates + the one-step state), recall@k of the candidates
against the exact top-k, the softmax mass they hold, the missed-mass bound ε, the L2
error of the prefiltered one-step state Ξ_Cᵀ softmax(β Ξ_C v) against the dense state
Ξᵀ softmax(β Ξ v), top-1 agreement, the share of queries that would fall back to exact
retrieval (ε > tolerance), and the dense time for comparison. Queries are noisy stored
memories (the realistic use: a corrupted pattern to complete) and pure random vectors.
Then sweeps of IVF nprobe and HNSW efSearch.

    python bench/bench_prefilter.py --quick     # < 1 min
    python bench/bench_prefilter.py             # N = 1e5, d = 128: a few minutes

Writes bench/results/prefilter.json (prefilter_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402  (only to report its thread count; lam_engine.index owns it)

from lam_engine.config import PrefilterConfig  # noqa: E402
from lam_engine.index import Prefilter, make_prefilter, set_threads, setup_faiss  # noqa: E402
from lam_engine.math.bound import missed_mass_bound  # noqa: E402

BETAS = (1.0, 8.0, 32.0)
KS = (32, 256)
KINDS = ("flat", "ivf", "hnsw")
NOISE = 0.3  # L2 norm of the Gaussian noise added to a stored memory (before renormalizing)
TOLERANCE = PrefilterConfig().tolerance


@dataclass(frozen=True)
class Sizes:
    n: int
    d: int
    n_queries: int  # per query set, for the accuracy metrics
    n_timed_single: int  # B=1 queries timed
    n_timed_batches: int  # B=32 batches timed
    nprobes: tuple[int, ...]
    ef_searches: tuple[int, ...]


FULL = Sizes(100_000, 128, 500, 200, 20, (8, 16, 32, 64, 128), (64, 128, 256, 512))
QUICK = Sizes(20_000, 64, 200, 60, 10, (8, 32, 64), (64, 128, 256))
# CI smoke (`python -m bench --tiny`): every kind, k and sweep path, on a bank small enough
# that the float64 reference passes and the HNSW build take a few seconds, not a minute.
TINY = Sizes(4_000, 32, 64, 20, 4, (8,), (64,))


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_queries(xi: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = rng.choice(xi.shape[0], size=n, replace=False)
    noise = rng.standard_normal((n, xi.shape[1]))
    noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    return {
        "noisy": unit_rows(xi[rows] + noise),
        "random": unit_rows(rng.standard_normal((n, xi.shape[1]))),
    }


@dataclass
class Dense:
    """Exact one-step Model B results of a query set at one β."""

    log_z: np.ndarray  # (Q,) log Σ_μ e^{β ξ_μ·v}
    state: np.ndarray  # (Q, d) Ξᵀ softmax(β Ξ v)
    top1: np.ndarray  # (Q,)


def dense_pass(
    xi_t: torch.Tensor, v: np.ndarray, beta: float, chunk: int = 128
) -> tuple[Dense, np.ndarray]:
    """Exact results at β, and the exact top-max(KS) rows (β-independent), in query chunks."""
    log_z, states, top1, topk = [], [], [], []
    for start in range(0, v.shape[0], chunk):
        q = torch.from_numpy(v[start : start + chunk]).double()
        s = q @ xi_t.T  # (b, N) float64: the reference
        z = beta * s
        lz = torch.logsumexp(z, dim=1)  # (b,)
        p = torch.exp(z - lz[:, None])  # (b, N)
        log_z.append(lz.numpy())
        states.append((p @ xi_t).numpy())  # (b, d)
        top1.append(torch.argmax(s, dim=1).numpy())
        topk.append(torch.topk(s, max(KS), dim=1).indices.numpy())
    dense = Dense(np.concatenate(log_z), np.concatenate(states), np.concatenate(top1))
    return dense, np.concatenate(topk)


def prefiltered_step(
    xi: np.ndarray, v: np.ndarray, keys: np.ndarray, beta: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(state (B, d), exact candidate scores (B, k) with -inf padding, top-1 key (B,))."""
    valid = keys >= 0
    gathered = xi[np.maximum(keys, 0)]  # (B, k, d)
    s = np.einsum("bkd,bd->bk", gathered.astype(np.float64), v.astype(np.float64))
    s = np.where(valid, s, -np.inf)  # (B, k)
    z = beta * s
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)  # (B, k)
    state = np.einsum("bk,bkd->bd", p, gathered)  # (B, d)
    top1 = keys[np.arange(keys.shape[0]), np.argmax(s, axis=1)]
    return state, s, top1


def accuracy(
    xi: np.ndarray,
    v: np.ndarray,
    keys: np.ndarray,
    cand_scores: np.ndarray,
    truth_topk: np.ndarray,
    dense: dict[float, Dense],
    exact_topk: bool,
) -> dict[str, Any]:
    k = keys.shape[1]
    truth = truth_topk[:, :k]
    recall = float(
        np.mean([np.intersect1d(a, b).size / k for a, b in zip(keys, truth, strict=True)])
    )
    out: dict[str, Any] = {"recall": recall, "by_beta": {}}
    for beta, ref in dense.items():
        state, s_exact, top1 = prefiltered_step(xi, v, keys, beta)
        held = np.exp(np.logaddexp.reduce(beta * s_exact, axis=1) - ref.log_z)  # (Q,)
        # ε from the FAISS scores, as the bank computes it.
        eps = missed_mass_bound(cand_scores, xi.shape[0], beta)
        err = np.linalg.norm(state - ref.state, axis=1)
        missed = 1 - held
        accepted = eps <= TOLERANCE  # served from the candidates; the rest fall back to exact
        out["by_beta"][str(beta)] = {
            "mass_missed_mean": float(np.mean(missed)),
            "mass_missed_max": float(np.max(missed)),
            "eps_mean": float(np.mean(eps)),
            "eps_max": float(np.max(eps)),
            "bound_holds": bool(np.all(1 - held <= eps * (1 + 1e-3) + 1e-9))
            if exact_topk
            else None,
            "fallback_rate": float(np.mean(eps > TOLERANCE)),
            # Accepted queries whose candidates in truth miss more than the tolerance:
            # impossible for exact top-k (ε is a certificate), the risk of IVF/HNSW.
            "silent_miss_rate": float(np.mean(accepted & (missed > TOLERANCE))),
            "accepted_state_err_max": float(np.max(err[accepted])) if accepted.any() else None,
            "accepted_top1_agree": float(np.mean((top1 == ref.top1)[accepted]))
            if accepted.any()
            else None,
            "state_err_mean": float(np.mean(err)),
            "state_err_max": float(np.max(err)),
            "top1_agree": float(np.mean(top1 == ref.top1)),
        }
    return out


def serve_step(
    pf: Prefilter, xi_t: torch.Tensor, q: np.ndarray, k: int, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """What a prefiltered query costs: search, then softmax over the FAISS scores (exact
    inner products: every kind here stores raw vectors), the state and ε, in float32."""
    scores, keys = pf.search(q, k)
    s = torch.from_numpy(scores)  # (B, k), -inf padding
    gathered = xi_t[torch.from_numpy(np.maximum(keys, 0))]  # (B, k, d)
    p = torch.softmax(beta * s, dim=1)  # (B, k)
    state = torch.bmm(p[:, None, :], gathered)[:, 0]  # (B, d)
    eps = missed_mass_bound(scores, xi_t.shape[0], beta)
    return state.numpy(), eps


def time_prefiltered(
    pf: Prefilter, xi_t: torch.Tensor, v: np.ndarray, k: int, batch: int, n_batches: int
) -> tuple[float, float]:
    """Median seconds per batch: (search only, whole prefiltered step)."""
    search_times, step_times = [], []
    for i in range(n_batches):
        q = v[(i * batch) % v.shape[0] :][:batch]
        t0 = time.perf_counter()
        pf.search(q, k)
        t1 = time.perf_counter()
        serve_step(pf, xi_t, q, k, 32.0)
        t2 = time.perf_counter()
        search_times.append(t1 - t0)
        step_times.append(t2 - t1)
    return float(np.median(search_times)), float(np.median(step_times))


def time_dense(xi_t: torch.Tensor, v: np.ndarray, batch: int, n_batches: int) -> float:
    """Seconds per batch of the exact one-step Model B update in float32 (median)."""
    times = []
    for i in range(n_batches):
        q = torch.from_numpy(v[(i * batch) % v.shape[0] :][:batch])
        t0 = time.perf_counter()
        p = torch.softmax(32.0 * (q @ xi_t.T), dim=1)  # (B, N)
        (p @ xi_t).numpy()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(sizes: Sizes, seed: int = 0, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    xi = unit_rows(rng.standard_normal((sizes.n, sizes.d)))
    keys = np.arange(sizes.n, dtype=np.int64)  # key = row, so candidates index xi directly
    queries = make_queries(xi, sizes.n_queries, rng)
    xi_t = torch.from_numpy(xi)
    xi_t64 = xi_t.double()

    dense: dict[str, dict[float, Dense]] = {}
    truth: dict[str, np.ndarray] = {}
    for name, v in queries.items():
        dense[name] = {}
        for beta in BETAS:
            dense[name][beta], truth[name] = dense_pass(xi_t64, v, beta)

    timed = queries["noisy"]
    dense_time = {
        "B1_ms": 1e3 * time_dense(xi_t, timed, 1, sizes.n_timed_single),
        "B32_ms": 1e3 * time_dense(xi_t, timed, 32, sizes.n_timed_batches),
    }

    rows: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []
    for kind in kinds:
        config = PrefilterConfig(kind=kind)
        pf = make_prefilter(config, sizes.d)
        t0 = time.perf_counter()
        pf.rebuild(keys, xi)
        build_s = time.perf_counter() - t0
        for k in KS:
            row: dict[str, Any] = {
                "kind": kind,
                "k": k,
                "build_s": build_s,
                "index": pf.describe(),
            }
            for label, batch, reps in (
                ("B1", 1, sizes.n_timed_single),
                ("B32", 32, sizes.n_timed_batches),
            ):
                search_s, step_s = time_prefiltered(pf, xi_t, timed, k, batch, reps)
                row[f"{label}_search_ms"] = 1e3 * search_s
                row[f"{label}_ms"] = 1e3 * step_s
            for name, v in queries.items():
                scores, found = pf.search(v, k)
                row[name] = accuracy(xi, v, found, scores, truth[name], dense[name], pf.exact_topk)
            rows.append(row)
            print(
                f"  {kind:5s} k={k:4d} built {build_s:6.2f}s  B1 {row['B1_ms']:7.3f} ms", flush=True
            )

        values = {"ivf": sizes.nprobes, "hnsw": sizes.ef_searches}.get(kind, ())
        for value in values:
            pname = "nprobe" if kind == "ivf" else "ef_search"
            pf.set_search_params(**{pname: value})
            for k in KS:
                v = queries["noisy"]
                scores, found = pf.search(v, k)
                acc = accuracy(xi, v, found, scores, truth["noisy"], dense["noisy"], False)
                _, b1 = time_prefiltered(pf, xi_t, timed, k, 1, sizes.n_timed_single)
                _, b32 = time_prefiltered(pf, xi_t, timed, k, 32, sizes.n_timed_batches)
                sweeps.append(
                    {
                        "kind": kind,
                        pname: value,
                        "k": k,
                        "recall": acc["recall"],
                        "B1_ms": 1e3 * b1,
                        "B32_ms": 1e3 * b32,
                        "by_beta": acc["by_beta"],
                    }
                )
        del pf

    return {
        "sizes": sizes.__dict__,
        "seed": seed,
        "noise": NOISE,
        "tolerance": TOLERANCE,
        "betas": list(BETAS),
        "defaults": PrefilterConfig().to_dict(),
        "machine": {
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "faiss": faiss.__version__,
        },
        "dense": dense_time,
        "rows": rows,
        "sweeps": sweeps,
        "total_s": time.perf_counter() - t_start,
    }


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) < 1e-3 or abs(x) >= 1e4:
        return f"{x:.1e}"
    return f"{x:.3f}"


def _table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def print_tables(res: dict[str, Any]) -> str:
    dense = res["dense"]
    s = res["sizes"]
    lines = [
        f"N={s['n']} d={s['d']}, {s['n_queries']} queries per set, noise={res['noise']}, "
        f"tolerance={res['tolerance']}; dense one step: B=1 {dense['B1_ms']:.2f} ms, "
        f"B=32 {dense['B32_ms']:.2f} ms",
        "",
    ]
    body = []
    for row in res["rows"]:
        body.append(
            [
                row["kind"],
                str(row["k"]),
                f"{row['build_s']:.2f}",
                f"{row['B1_search_ms']:.3f}",
                f"{row['B1_ms']:.3f} ({dense['B1_ms'] / row['B1_ms']:.1f}×)",
                f"{row['B32_search_ms']:.2f}",
                f"{row['B32_ms']:.2f} ({dense['B32_ms'] / row['B32_ms']:.1f}×)",
                f"{row['noisy']['recall']:.3f}",
                f"{row['random']['recall']:.3f}",
            ]
        )
    head = ["kind", "k", "build s", "B=1 search ms", "B=1 step ms (speedup)"]
    head += ["B=32 search ms", "B=32 step ms (speedup)", "recall@k noisy", "recall@k random"]
    lines += _table(head, body)
    lines.append("")
    body = []
    for name in ("noisy", "random"):
        for row in res["rows"]:
            for beta in res["betas"]:
                b = row[name]["by_beta"][str(beta)]
                body.append(
                    [
                        name,
                        row["kind"],
                        str(row["k"]),
                        f"{beta:g}",
                        _fmt(b["mass_missed_mean"]),
                        _fmt(b["mass_missed_max"]),
                        _fmt(b["eps_mean"]),
                        _fmt(b["eps_max"]),
                        f"{b['fallback_rate']:.2f}",
                        f"{b['silent_miss_rate']:.3f}",
                        _fmt(b["state_err_mean"]),
                        _fmt(b["state_err_max"]),
                        _fmt(b["accepted_state_err_max"]),
                        f"{b['top1_agree']:.3f}",
                    ]
                )
    head = ["queries", "kind", "k", "β", "missed mass mean", "missed mass max", "ε mean"]
    head += ["ε max", "fallback", "silent miss", "state err mean", "state err max"]
    head += ["accepted state err max", "top-1 agree"]
    lines += _table(head, body)
    lines.append("")
    body = []
    for sw in res["sweeps"]:
        pname = "nprobe" if sw["kind"] == "ivf" else "ef_search"
        b = sw["by_beta"]["32.0"]
        body.append(
            [
                sw["kind"],
                f"{pname}={sw[pname]}",
                str(sw["k"]),
                f"{sw['B1_ms']:.3f}",
                f"{sw['B32_ms']:.2f}",
                f"{sw['recall']:.3f}",
                _fmt(b["mass_missed_mean"]),
                _fmt(b["mass_missed_max"]),
                _fmt(b["eps_max"]),
                f"{b['fallback_rate']:.3f}",
                f"{b['silent_miss_rate']:.3f}",
                _fmt(b["accepted_state_err_max"]),
                f"{b['top1_agree']:.3f}",
            ]
        )
    head = ["kind", "param", "k", "B=1 step ms", "B=32 step ms", "recall@k"]
    head += ["β=32 missed mean", "β=32 missed max", "β=32 ε max", "β=32 fallback"]
    head += ["β=32 silent miss", "β=32 accepted state err max", "β=32 top-1"]
    lines += _table(head, body)
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small bank, < 1 min")
    parser.add_argument("--tiny", action="store_true", help="CI smoke sizes (with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and FAISS threads (default 1: on a shared 2-core box, multi-threaded"
        " timings mostly measure who else is running)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--d", type=int, default=None, help="dimension (default: 128, quick 64)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--no-sweeps", action="store_true", help="skip the nprobe/ef sweeps")
    args = parser.parse_args(argv)
    if args.out is None:
        # Quick runs must not overwrite the full-size numbers that docs/prefilter.md cites.
        suffix = f"_d{args.d}" if args.d is not None else ""
        name = f"prefilter{suffix}_quick.json" if args.quick else f"prefilter{suffix}.json"
        args.out = ROOT / "bench" / "results" / name
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    if args.d is not None:
        sizes = replace(sizes, d=args.d)
    if args.no_sweeps:
        sizes = replace(sizes, nprobes=(), ef_searches=())
    torch.set_num_threads(args.threads)
    setup_faiss()  # what an Engine does at open: BLAS from the first query
    set_threads(args.threads)
    res = run(sizes, args.seed, tuple(args.kinds))
    res["mode"] = "tiny" if args.tiny else "quick" if args.quick else "full"
    res["table"] = print_tables(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, allow_nan=False, default=_json_default))
    print(f"wrote {args.out} ({res['total_s']:.0f} s)")
    return 0


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))


if __name__ == "__main__":
    sys.exit(main())
