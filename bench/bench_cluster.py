"""Sharded banks on a real local Ray cluster: throughput, p50/p99, and where a query's time goes.

    python -m bench.bench_cluster [--quick | --tiny] [--n N] [--d D] [--batch B] [--out PATH]

On a 3-node cluster on this machine (lam_client/cluster_local.py: nodes on 127.0.0.2-4),
through the router's Python backend (lam_cluster.backend.ClusterEngine, what the service
calls), for K = 1, 2, 3 shards with R = 1 and K = 3 with R = 2, it measures:

- latency: one client, p50/p99 of a batch query (B rows, `steps` update steps);
- throughput: `--clients` threads querying at once for a few seconds (queries/s);
- the split of one query's time (the observer of lam_cluster/observe.py sees every call):
  the shards' compute as each replica timed its pass (per round, the slowest shard: the
  critical path), the router's own time (merge rounds, update, submits: wall time less the
  waits) and the rest, which is the Ray calls' cost (serialization, scheduling, transfer).

Then a model for K = 8–64 machines from those measured costs: a dense pass is c0 + a·N/K
(a: the slope of one pass in its rows, timed in this process at N and N/4; c0: what the
replicas timed beyond a·N/K), a round's fan-out (Ray calls, submits, merge) f0 + f1·K
(fitted over K = 1..3); latency = passes × pass + rounds × fan-out (a query of s steps has
s + 1 passes and one more round, the shards' counts); throughput is bounded by the shards
(each on its own machine: 1 / (passes × pass) queries/s per replica set) and by the one
router process (1 / its own time per query). The machine is 2 shared cores: all three nodes, the
router and other jobs share them, so no speed-up is to be read here, only the costs.
`--tiny` (CI smoke: that the script runs) is one node, K = 1, 2 and a tiny bank. Without
Ray (the `cluster` extra) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a file (python bench/bench_cluster.py, the suite)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, machine_info, print_table, write_json
from lam_engine import BankConfig

ROOT = Path(__file__).resolve().parents[1]


class Recorder:
    """An lam_cluster observer keeping every call and merge time (one list per run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, str, str, float, int, int, float | None]] = []
        self.merges: list[float] = []

    def call(self, *args: Any) -> None:
        with self.lock:
            self.calls.append(args)  # type: ignore[arg-type]

    def merge(self, bank: str, seconds: float) -> None:
        with self.lock:
            self.merges.append(seconds)

    def replica_state(self, *args: Any) -> None: ...
    def catch_up(self, *args: Any) -> None: ...
    def marked_dead(self, *args: Any) -> None: ...
    def forget(self, bank: str) -> None: ...

    def clear(self) -> None:
        with self.lock:
            self.calls, self.merges = [], []


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def split_query(rec: Recorder, k: int) -> dict[str, float]:
    """One query's calls (recorded alone): rounds of K calls, each round's slowest shard."""
    calls = rec.calls
    rounds = [calls[i : i + k] for i in range(0, len(calls), k)]
    compute = sum(max((c[7] or 0.0) for c in r) for r in rounds)
    dense = [c for c in calls if c[2] == "dense"]
    return {
        "rounds": float(len(rounds)),
        "dense_rounds": float(len(dense) // k),
        "compute_s": compute,
        "router_s": sum(rec.merges),
        "call_wall_s": sum(max(c[4] for c in r) for r in rounds),
        "sent": float(sum(c[5] for c in calls)),
        "received": float(sum(c[6] for c in calls)),
    }


def run_config(
    engine: Any,
    rec: Recorder,
    k: int,
    r: int,
    xi: np.ndarray,
    queries: np.ndarray,
    *,
    steps: int,
    reps: int,
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    name = f"k{k}r{r}"
    n, d = xi.shape
    cfg = BankConfig(dim=d, beta=8.0, shards=k, replicas=r)
    engine.create_bank(name, cfg)
    t0 = time.perf_counter()
    for s in range(0, n, 5000):
        engine.upsert(name, xi[s : s + 5000], ids=[f"m{i}" for i in range(s, min(n, s + 5000))])
    load_s = time.perf_counter() - t0

    def one() -> float:
        t = time.perf_counter()
        engine.query(name, queries, steps=steps, top_k=5)
        return time.perf_counter() - t

    for _ in range(2):
        one()  # warm-up: the replicas' first passes
    lat, parts = [], []
    for _ in range(reps):
        rec.clear()
        lat.append(one())
        parts.append(split_query(rec, k))
    # throughput: `clients` threads for `seconds`
    stop = time.perf_counter() + seconds
    done: list[float] = []

    def client() -> None:
        while time.perf_counter() < stop:
            done.append(one())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t1 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t1
    engine.delete_bank(name)
    med = {key: statistics.median(p[key] for p in parts) for key in parts[0]}
    p50 = pct(lat, 50)
    rounds = med["rounds"]
    return {
        "shards": k,
        "replicas": r,
        "n": n,
        "load_s": load_s,
        "p50_ms": 1e3 * p50,
        "p99_ms": 1e3 * pct(lat, 99),
        "qps": len(done) / wall,
        "rows_per_s": len(done) * len(queries) / wall,
        "loaded_p50_ms": 1e3 * pct(done, 50),
        "loaded_p99_ms": 1e3 * pct(done, 99),
        "rounds": rounds,
        "dense_rounds": med["dense_rounds"],
        "compute_ms": 1e3 * med["compute_s"],  # critical path: the slowest shard per round
        "router_ms": 1e3 * med["router_s"],
        "ray_ms": 1e3 * max(0.0, p50 - med["compute_s"] - med["router_s"]),
        "compute_per_pass_ms": 1e3 * med["compute_s"] / max(1.0, med["dense_rounds"]),
        "overhead_per_round_ms": 1e3 * max(0.0, p50 - med["compute_s"]) / rounds,
        "router_per_round_ms": 1e3 * med["router_s"] / rounds,
        "kb_per_query": (med["sent"] + med["received"]) / 1e3,
    }


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = c0 + c1·x (c0, c1 clamped at 0: a cost is not negative)."""
    c1, c0 = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return max(0.0, float(c0)), max(0.0, float(c1))


def pass_per_row_ms(xi: np.ndarray, queries: np.ndarray) -> float:
    """The slope of one dense pass in its rows, in this process (one bank, steps = 0, at N and
    N/4): under load the replicas' own timings at N/K for K = 1..3 are too close together
    for a slope, their fixed part is what they show."""
    from lam_engine import Engine

    engine = Engine.open(None)
    times = []
    for rows in (len(xi), len(xi) // 4):
        engine.create_bank(f"p{rows}", BankConfig(dim=xi.shape[1], beta=8.0))
        engine.upsert(f"p{rows}", xi[:rows])
        engine.query(f"p{rows}", queries, steps=0)
        reps = []
        for _ in range(7):
            t = time.perf_counter()
            engine.query(f"p{rows}", queries, steps=0, top_k=5)
            reps.append(time.perf_counter() - t)
        times.append(statistics.median(reps))
        engine.delete_bank(f"p{rows}")
    return max(0.0, 1e3 * (times[0] - times[1]) / (len(xi) - len(xi) // 4))


def model(rows: list[dict[str, Any]], n_model: int, n: int, a: float) -> dict[str, Any]:
    """The K = 8-64 model from the R = 1 rows (module docstring); `a`: ms per row of a pass."""
    base = [r for r in rows if r["replicas"] == 1]
    ks = [float(r["shards"]) for r in base]
    # a dense pass = c0 + a · rows per shard. a: the in-process slope, but never above what a
    # replica's own pass gives per row (load swings between the two measurements); c0: what
    # the replicas measured beyond a · N/K.
    a_in_process = a
    a = min([a] + [r["compute_per_pass_ms"] * r["shards"] / n for r in base])
    c0 = statistics.median(max(0.0, r["compute_per_pass_ms"] - a * n / r["shards"]) for r in base)
    # the rest of a round (Ray calls + router) = f0 + f1 · K; the router's part alone likewise
    f0, f1 = fit(ks, [r["overhead_per_round_ms"] for r in base])
    m0, m1 = fit(ks, [r["router_per_round_ms"] for r in base])
    rounds = statistics.median(r["rounds"] for r in base)
    dense = statistics.median(r["dense_rounds"] for r in base)
    out = []
    for k in (8, 16, 32, 64):
        pass_ms = c0 + a * n_model / k
        over_ms = f0 + f1 * k
        router_ms = m0 + m1 * k
        lat = dense * pass_ms + rounds * over_ms
        shard_qps = 1e3 / (dense * pass_ms)  # every shard busy on its own machine
        router_qps = 1e3 / (rounds * router_ms) if router_ms > 0 else float("inf")
        limit = "shard pass" if shard_qps < router_qps else "router process"
        out.append({
            "machines": k, "pass_ms": pass_ms, "fanout_ms": over_ms, "router_ms": router_ms,
            "latency_ms": lat, "qps": min(shard_qps, router_qps), "shard_qps": shard_qps,
            "router_qps": router_qps, "limit": limit,
        })  # fmt: skip
    return {
        "n_model": n_model,
        "rounds": rounds,
        "dense_rounds": dense,
        "pass_ms": {"c0": c0, "per_row_us": 1e3 * a, "in_process_per_row_us": 1e3 * a_in_process},
        "fanout_ms": {"f0": f0, "per_shard": f1},
        "router_ms": {"m0": m0, "per_shard": m1},
        "rows": out,
    }


def with_cluster(nodes: int, fn: Callable[[dict[str, Any]], Any]) -> Any:
    from lam_client import cluster_local

    d = Path(tempfile.mkdtemp(prefix="lam-bench-cluster-"))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + old if old else "")
    t = time.perf_counter()
    doc = cluster_local.up(d / "cluster", nodes)
    print(f"cluster of {nodes} nodes up in {time.perf_counter() - t:.1f} s: {doc['address']}")
    try:
        return fn({"dir": d, **doc})
    finally:
        import ray

        ray.shutdown()
        cluster_local.down(d / "cluster")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="CI smoke: 1 node, K = 1, 2")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--n-model", type=int, default=10_000_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("bench_cluster: Ray is not installed (the `cluster` extra): skipped")
        return 0
    n = args.n or (2000 if args.tiny else 20_000 if args.quick else 60_000)
    reps, seconds = (3, 0.5) if args.tiny else (15, 2.0) if args.quick else (20, 3.0)
    configs = [(1, 1), (2, 1)] if args.tiny else [(1, 1), (2, 1), (3, 1), (3, 2)]
    nodes = 1 if args.tiny else 3
    rng = np.random.default_rng(0)
    xi = (rng.normal(size=(n, args.d)) / np.sqrt(args.d)).astype(np.float32)
    queries = (xi[: args.batch] + 0.1 * rng.normal(size=(args.batch, args.d))).astype(np.float32)
    info = machine_info()

    def bench(cluster: dict[str, Any]) -> list[dict[str, Any]]:
        from lam_cluster.backend import ClusterEngine

        rec = Recorder()
        engine = ClusterEngine(cluster["dir"] / "router", cluster["address"], observer=rec)
        rows = []
        for k, r in configs:
            row = run_config(
                engine, rec, k, r, xi, queries, steps=args.steps, reps=reps,
                clients=args.clients, seconds=seconds,
            )  # fmt: skip
            print(f"K = {k}, R = {r}: p50 {row['p50_ms']:.1f} ms, {row['qps']:.1f} q/s", flush=True)
            rows.append(row)
        return rows

    t0 = time.perf_counter()
    rows = with_cluster(nodes, bench)
    k1 = rows[0]
    print(f"\nN = {n} × d = {args.d} float32, B = {args.batch}, steps = {args.steps}, "
          f"{args.clients} clients; {nodes} nodes on one 2-core machine shared with other "
          f"jobs (load {info['loadavg_start'][0]:.1f} at start): costs, not speed-ups")  # fmt: skip
    print_table(
        "cluster queries (router's Python backend)",
        ["K", "R", "p50 ms", "p99 ms", "q/s", "q/s ×K=1", "rounds", "compute ms",
         "router ms", "Ray wait ms", "kB/query"],
        [[r["shards"], r["replicas"], r["p50_ms"], r["p99_ms"], r["qps"],
          r["qps"] / k1["qps"], r["rounds"], r["compute_ms"], r["router_ms"], r["ray_ms"],
          r["kb_per_query"]] for r in rows],
    )  # fmt: skip
    m = model(rows, args.n_model, n, pass_per_row_ms(xi, queries))
    print(f"\nmodel, N = {args.n_model:,} rows: a dense pass = {m['pass_ms']['c0']:.2f} ms + "
          f"{m['pass_ms']['per_row_us']:.4f} µs × N/K ({m['dense_rounds']:.0f} per query); "
          f"per round ({m['rounds']:.0f} per query) Ray calls + router = "
          f"{m['fanout_ms']['f0']:.2f} + {m['fanout_ms']['per_shard']:.3f} × K ms "
          f"(router alone {m['router_ms']['m0']:.2f} + "
          f"{m['router_ms']['per_shard']:.3f} × K)")  # fmt: skip
    print_table(
        "model for K machines",
        ["K", "pass ms", "fan-out ms", "latency ms", "q/s", "limit"],
        [[x["machines"], x["pass_ms"], x["fanout_ms"], x["latency_ms"], x["qps"], x["limit"]]
         for x in m["rows"]],
    )  # fmt: skip
    name = "cluster_tiny" if args.tiny else "cluster_quick" if args.quick else "cluster"
    data = {
        "machine": info, "n": n, "d": args.d, "batch": args.batch, "steps": args.steps,
        "clients": args.clients, "nodes": nodes, "rows": rows, "model": m,
        "wall_s": time.perf_counter() - t0,
    }  # fmt: skip
    if args.out is not None:
        write_json(args.out.stem, data, args.out.parent)
    else:
        write_json(name, data, RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
