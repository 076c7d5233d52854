"""HTTP query throughput and latency of the real service, next to its floors and ceilings.

Starts `python -m service` on 127.0.0.1 (its own data dir, SQLite synchronous=NORMAL), fills
one N × d float32 bank, then drives POST /v1/banks/{bank}/query (one query per request,
top_k=5) with `wrk` (C, epoll: far cheaper per request than the server, so it is not the
bottleneck) at 1/16/64 concurrent connections, for micro-batching on
(LAM_BATCH_WINDOW_MS=2) and off (0), for JSON bodies at steps 0 (score at the cue) and
steps 1 (the default) and application/x-npy bodies; and the same JSON queries on a second
bank with the certified IVF prefilter (normalized, β = 32, as issue 12's workload). In the
same run: GET /healthz at the same concurrency (the HTTP floor of this machine) and the
in-process `Engine.query` rate at the batch size the server actually achieved (read from
its `lam_query_batch_size` histogram). Every row has the server's CPU per request (user +
system time of the server process over the run, from /proc, divided by the requests).

Without `wrk` (`apt-get install -y wrk`) a fallback load generator of httpx client
processes is used and the report says so.

    python -m bench.bench_http [--quick] [--clients 1,16] [--windows 2] [--duration 5]

Writes bench/results/http[_quick].json and .png.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    die_with_parent,
    machine_info,
    measure,
    print_table,
    save_plot,
    write_json,
)
from lam_client._ops import npy_bytes as sdk_npy_bytes  # noqa: E402

BANK = "bench"
IVF_BANK = "bench_ivf"
IVF_BETA = 32.0
TOP_K = 5
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    n: int
    d: int
    clients: tuple[int, ...]
    duration_s: float
    windows_ms: tuple[float, ...] = (2.0, 0.0)  # micro-batching on, off


FULL = Sizes(100_000, 384, (1, 16, 64), 8.0)
QUICK = Sizes(2_000, 32, (1, 8), 1.0)
TINY = Sizes(500, 16, (4,), 0.5, (2.0,))  # CI smoke: 6 load runs of 0.5 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m service` in a subprocess, stopped with SIGTERM."""

    def __init__(
        self,
        data_dir: Path,
        window_ms: float,
        synchronous: str = "NORMAL",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "LAM_PORT": str(self.port),
            "LAM_HOST": "127.0.0.1",
            "LAM_DATA_DIR": str(data_dir),
            "LAM_BATCH_WINDOW_MS": str(window_ms),
            "LAM_SYNCHRONOUS": synchronous,
            "LAM_LOG_LEVEL": "warning",
            "LAM_MAX_BODY_BYTES": str(256 << 20),
            # The IVF bank is stored in one request (trained once, at N).
            "LAM_MAX_STORE_BATCH": "1000000",
            **(extra_env or {}),
        }
        env.pop("LAM_API_KEYS", None)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=die_with_parent,
        )
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"service exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("service did not become ready")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def batch_stats(self) -> tuple[float, float]:
        """(Σ rows, count) of the lam_query_batch_size histogram."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith("lam_query_batch_size_sum"):
                total += float(line.split()[-1])
            elif line.startswith("lam_query_batch_size_count"):
                count += float(line.split()[-1])
        return total, count


def npy_bytes(a: np.ndarray) -> bytes:
    """The .npy body of `a` as float32 (the SDK's encoding)."""
    return sdk_npy_bytes(np.ascontiguousarray(a, dtype=np.float32))


def fill_bank(url: str, xi: np.ndarray, ivf: bool) -> None:
    banks = [{"name": BANK, "dim": xi.shape[1], "beta": 8.0}]
    if ivf:
        banks.append({"name": IVF_BANK, "dim": xi.shape[1], "beta": IVF_BETA, "normalize": True,
                      "prefilter": {"kind": "ivf"}})  # fmt: skip
    with httpx.Client(base_url=url, timeout=1200) as c:
        for bank in banks:
            c.post("/v1/banks", json=bank).raise_for_status()
            # The IVF bank in one request: trained once at N, as after a restart.
            step = len(xi) if bank["name"] == IVF_BANK else 10_000
            for s in range(0, len(xi), step):
                r = c.post(
                    f"/v1/banks/{bank['name']}/memories",
                    content=npy_bytes(xi[s : s + step]),
                    headers={"content-type": "application/x-npy"},
                )
                r.raise_for_status()


# ---- load generation ------------------------------------------------------------------------


def wrk_run(
    url: str, path: str, body: bytes | None, ctype: str, conns: int, secs: float
) -> dict[str, float]:
    """One wrk run; returns rate (requests/s), p50 and p99 latency (ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        if body is None:
            script.write_text("wrk.method = 'GET'\n")
        else:
            bpath = Path(tmp) / "body.bin"
            bpath.write_bytes(body)
            script.write_text(
                f"local f = io.open('{bpath}', 'rb')\nwrk.body = f:read('*all')\nf:close()\n"
                f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = '{ctype}'\n"
                "done = function(summary, latency, requests)\n"
                "  io.write(string.format('STATS %d %d %d %d\\n', summary.requests,"
                " summary.errors.status + summary.errors.connect + summary.errors.read"
                " + summary.errors.write + summary.errors.timeout,"
                " latency:percentile(50), latency:percentile(99)))\nend\n"
            )
        if body is None:
            script.write_text(
                script.read_text() + "done = function(summary, latency, requests)\n"
                "  io.write(string.format('STATS %d %d %d %d\\n', summary.requests,"
                " summary.errors.status + summary.errors.connect + summary.errors.read"
                " + summary.errors.write + summary.errors.timeout,"
                " latency:percentile(50), latency:percentile(99)))\nend\n"
            )
        threads = min(2, conns)
        secs = max(1, round(secs))  # wrk takes whole seconds
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{conns}",
            f"-d{secs}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url + path,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"STATS (\d+) (\d+) (\d+) (\d+)", out)
    if m is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    reqs, errs, p50, p99 = (int(x) for x in m.groups())
    return {"rate": reqs / secs, "requests": reqs, "errors": errs, "p50_ms": p50 / 1000,
            "p99_ms": p99 / 1000}  # fmt: skip


def _httpx_worker(
    args: tuple[str, str, bytes | None, str, int, float],
) -> tuple[int, int, list[float]]:
    import threading

    url, path, body, ctype, threads, secs = args
    lat: list[float] = []
    errs = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + secs

    def loop() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                if body is None:
                    r = c.get(path)
                else:
                    r = c.post(path, content=body, headers={"content-type": ctype})
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if r.status_code >= 400:
                        errs[0] += 1

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(lat), errs[0], lat


def httpx_run(
    url: str, path: str, body: bytes | None, ctype: str, conns: int, secs: float
) -> dict[str, float]:
    """Fallback load generator: client processes × threads of blocking httpx clients."""
    procs = min(conns, 4)
    per = [conns // procs + (i < conns % procs) for i in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        res = pool.map(_httpx_worker, [(url, path, body, ctype, p, secs) for p in per])
    lat = np.concatenate([np.asarray(r[2]) for r in res]) if res else np.zeros(1)
    return {
        "rate": sum(r[0] for r in res) / secs,
        "requests": sum(r[0] for r in res),
        "errors": sum(r[1] for r in res),
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
    }


# ---- the benchmark --------------------------------------------------------------------------


def in_process_rate(xi: np.ndarray, batch: int, min_time: float) -> float:
    """Engine.query rate (queries/s) at `batch` queries per call, same bank, no HTTP."""
    from lam_engine.bank import PreparedBatch
    from lam_engine.config import BankConfig
    from lam_engine.engine import Engine

    engine = Engine.open(None, default_device="cpu")
    try:
        engine.create_bank(BANK, BankConfig(dim=xi.shape[1], beta=8.0))
        ids = [f"m{i}" for i in range(len(xi))]
        engine._slot(BANK).bank.apply(
            PreparedBatch(ids, ids, xi, [None] * len(xi)), np.arange(1, len(xi) + 1)
        )
        q = xi[:batch] + 0.01
        t = measure(lambda: engine.query(BANK, q, top_k=TOP_K), min_time=min_time)
        return batch / t.best
    finally:
        engine.close()


def _bodies(q: np.ndarray) -> dict[str, tuple[str, bytes, str]]:
    """Request kinds: name → (path, body, content type)."""
    path = f"/v1/banks/{BANK}/query"
    ivf = f"/v1/banks/{IVF_BANK}/query"
    one = {"queries": [q.tolist()], "top_k": TOP_K}
    return {
        "json": (path, orjson.dumps(one), "application/json"),
        "json-steps0": (path, orjson.dumps({**one, "steps": 0}), "application/json"),
        "npy": (path + f"?top_k={TOP_K}", npy_bytes(q[None]), "application/x-npy"),
        "ivf-json": (ivf, orjson.dumps(one), "application/json"),
        "ivf-json-steps0": (ivf, orjson.dumps({**one, "steps": 0}), "application/json"),
    }


def _measured(srv: Server, load: Any, path: str, body: bytes | None, ctype: str,
              clients: int, secs: float) -> dict[str, Any]:  # fmt: skip
    """One load run, with the server's CPU per request and its mean engine batch."""
    s0, n0 = srv.batch_stats()
    c0 = srv.cpu_s()
    r = load(srv.url, path, body, ctype, clients, secs)
    cpu = srv.cpu_s() - c0
    s1, n1 = srv.batch_stats()
    return {**r, "cpu_ms": 1000 * cpu / max(1, r["requests"]),
            "mean_batch": (s1 - s0) / max(1.0, n1 - n0)}  # fmt: skip


def run(sizes: Sizes, seed: int, ivf: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((sizes.n, sizes.d)).astype(np.float32)
    xi /= np.linalg.norm(xi, axis=1, keepdims=True)
    # A stored memory plus 20 % noise (issue 12's workload), renormalized.
    noise = rng.standard_normal(sizes.d).astype(np.float32)
    q = xi[7] + 0.2 * np.linalg.norm(xi[7]) * noise / np.linalg.norm(noise)
    q /= np.linalg.norm(q)
    bodies = {k: v for k, v in _bodies(q).items() if ivf or not k.startswith("ivf")}
    use_wrk = shutil.which("wrk") is not None
    load = wrk_run if use_wrk else httpx_run
    print(
        f"load generator: {'wrk' if use_wrk else 'httpx processes (wrk not installed)'}", flush=True
    )
    rows: list[dict[str, Any]] = []
    batch_sizes: set[int] = {1}
    with tempfile.TemporaryDirectory(prefix="lam-bench-http-") as tmp:
        data = Path(tmp)
        fill_s = 0.0
        for i, window in enumerate(sizes.windows_ms):
            srv = Server(data, window)
            try:
                if i == 0:
                    t0 = time.perf_counter()
                    fill_bank(srv.url, xi, ivf)
                    fill_s = time.perf_counter() - t0
                for c in sizes.clients:
                    r = _measured(srv, load, "/healthz", None, "", c, sizes.duration_s)
                    rows.append({"endpoint": "healthz", "batching": window > 0, "format": "-",
                                 "clients": c, **r})  # fmt: skip
                    _print(rows[-1])
                    for fmt, (path, body, ctype) in bodies.items():
                        r = _measured(srv, load, path, body, ctype, c, sizes.duration_s)
                        batch_sizes.add(max(1, round(r["mean_batch"])))
                        rows.append({"endpoint": "query", "batching": window > 0, "format": fmt,
                                     "clients": c, **r})  # fmt: skip
                        _print(rows[-1])
            finally:
                srv.stop()
    engine_rate = {
        b: in_process_rate(xi, b, 1.0 if sizes.n == FULL.n else 0.05) for b in sorted(batch_sizes)
    }
    for r in rows:
        if r["endpoint"] == "query" and r["format"] in ("json", "npy"):
            b = max(1, round(r["mean_batch"]))
            r["engine_rate"] = engine_rate[b]
            r["vs_engine"] = r["rate"] / engine_rate[b]
    return {
        "machine": info_with(use_wrk),
        "sizes": sizes.__dict__,
        "fill_s": fill_s,
        "engine_rate_by_batch": engine_rate,
        "rows": rows,
    }


def info_with(use_wrk: bool) -> dict[str, Any]:
    return {**machine_info(), "load_generator": "wrk" if use_wrk else "httpx"}


def _print(r: dict[str, Any]) -> None:
    print(
        f"{r['endpoint']:8s} batching={r['batching']!s:5s} {r['format']:4s} c={r['clients']:3d} "
        f"{r['rate']:8.1f} req/s p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms "
        f"errors {r['errors']} batch {r.get('mean_batch', float('nan')):.1f} "
        f"server CPU {r['cpu_ms']:.2f} ms/req",
        flush=True,
    )


def report(res: dict[str, Any]) -> str:
    cols = ["endpoint", "micro-batching", "body", "clients", "req/s", "p50 ms", "p99 ms",
            "errors", "server CPU ms/req", "mean batch", "in-process q/s at batch",
            "HTTP / in-process"]  # fmt: skip
    table = [
        [r["endpoint"], "on" if r["batching"] else "off", r["format"], r["clients"], r["rate"],
         r["p50_ms"], r["p99_ms"], r["errors"], r.get("cpu_ms", float("nan")),
         r.get("mean_batch", float("nan")), r.get("engine_rate", float("nan")),
         r.get("vs_engine", float("nan"))]
        for r in res["rows"]
    ]  # fmt: skip
    s = res["sizes"]
    return print_table(
        f"HTTP query, N={s['n']}, d={s['d']} float32, 1 query/request, top_k={TOP_K} "
        f"(load: {res['machine']['load_generator']})",
        cols,
        table,
    )


def plot(res: dict[str, Any], path: Path) -> None:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 2, 1)
        ax2 = fig.add_subplot(1, 2, 2)
        for batching in (True, False):
            for fmt in ("json", "json-steps0", "npy", "ivf-json", "ivf-json-steps0"):
                rs = [
                    r
                    for r in res["rows"]
                    if r["endpoint"] == "query" and r["batching"] == batching and r["format"] == fmt
                ]
                lab = f"{fmt}, batching {'on' if batching else 'off'}"
                ax.plot([r["clients"] for r in rs], [r["rate"] for r in rs], "o-", label=lab)
                ax2.plot([r["clients"] for r in rs], [r["p99_ms"] for r in rs], "o-", label=lab)
        for a, yl in ((ax, "requests / s"), (ax2, "p99 latency (ms)")):
            a.set_xscale("log")
            a.set_yscale("log")
            a.set_xlabel("concurrent clients")
            a.set_ylabel(yl)
            a.legend(fontsize=7)

    save_plot(path, draw, title="HTTP query (1 query per request)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CI smoke sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--clients", help="comma-separated client counts (default: the mode's)")
    parser.add_argument("--windows", help="comma-separated batch windows in ms (default 2,0)")
    parser.add_argument("--duration", type=float, help="seconds per load run")
    parser.add_argument("--no-ivf", action="store_true", help="skip the IVF bank (its training)")
    parser.add_argument("--name", help="results file name (default http[_quick])")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    if args.clients:
        sizes = replace(sizes, clients=tuple(int(c) for c in args.clients.split(",")))
    if args.windows:
        sizes = replace(sizes, windows_ms=tuple(float(w) for w in args.windows.split(",")))
    if args.duration:
        sizes = replace(sizes, duration_s=args.duration)
    res = run(sizes, args.seed, ivf=not args.no_ivf)
    res["markdown"] = report(res)
    name = args.name or ("http_quick" if args.quick else "http")
    write_json(name, res, args.out_dir)
    plot(res, args.out_dir / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
