"""Write the measured part of docs/performance.md from bench/results/*.json.

    python -m bench.report            # after `python -m bench` (make bench)

Everything between the GENERATED markers of docs/performance.md (and of docs/prefilter.md,
which gets the d = 128 prefilter tables) is replaced: the targets
of the performance issue with the measured value and whether it is met, then each
benchmark's own tables, as the benchmarks printed them. The prose around the markers is
kept, so the numbers in the docs are always those of the last full run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
PREFILTER_DOC = ROOT / "docs" / "prefilter.md"
BEGIN, END = "<!-- BEGIN GENERATED (python -m bench.report) -->", "<!-- END GENERATED -->"

Target = tuple[str, str, Callable[[dict[str, Any]], tuple[str, bool | None]]]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _rows(engine: dict[str, Any], **where: Any) -> list[dict[str, Any]]:
    return [r for r in engine["rows"] if all(r.get(k) == v for k, v in where.items())]


def _min_ratio(rows: list[dict[str, Any]], key: str) -> tuple[float, dict[str, Any]]:
    worst = min(rows, key=lambda r: r[key])
    return float(worst[key]), worst


def _where(r: dict[str, Any]) -> str:
    return f"{r['dtype']} N={r['n']:,} d={r['d']} B={r['b']}"


def engine_targets(engine: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    out: list[tuple[str, str, str, bool | None]] = []
    batched = [r for r in engine["rows"] if r["b"] >= 32 and r["n"] >= 100_000]
    if batched:
        v, r = _min_ratio(batched, "pass_vs_sdpa")
        out.append(("Model B step (pass) ≥ 90 % of raw SDPA, B ≥ 32, N ≥ 10⁵",
                    f"worst {v:.2f}× ({_where(r)})", "≥ 0.90×", v >= 0.9))  # fmt: skip
        v, r = _min_ratio(batched, "engine_vs_sdpa")
        out.append(("Engine.query (one step + the scoring pass at the returned state) vs SDPA",
                    f"worst {v:.2f}× ({_where(r)})", "reported", None))  # fmt: skip
    single = [r for r in engine["rows"] if r["b"] == 1 and r["n"] >= 100_000]
    for dtype in ("float32", "bfloat16"):
        rows = [r for r in single if r["dtype"] == dtype]
        if rows:
            v, r = _min_ratio(rows, "pass_ceiling")
            best = max(r2["pass_ceiling"] for r2 in rows)
            out.append((f"B = 1 pass ≥ 50 % of read bandwidth ({dtype}, N ≥ 10⁵)",
                        f"{v:.0%}–{best:.0%} (worst {_where(r)})", "≥ 50 %", v >= 0.5))  # fmt: skip
    for b in (256,):
        pairs = []
        for r in _rows(engine, dtype="bfloat16", b=b):
            f32 = _rows(engine, dtype="float32", b=b, n=r["n"], d=r["d"])
            if f32 and r["n"] >= 100_000:
                pairs.append((r["engine_qps"] / f32[0]["engine_qps"], r))
        if pairs:
            v, r = min(pairs, key=lambda p: p[0])
            out.append((f"bfloat16 ≥ 1.6× float32 at B = {b} (Engine.query, N ≥ 10⁵)",
                        f"worst {v:.2f}× ({_where(r)})", "≥ 1.6×", v >= 1.6))  # fmt: skip
    return out


def prefilter_targets(pre: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    dense = pre["dense"]["B1_ms"]
    out = []
    for r in pre["rows"]:
        if r["kind"] != "ivf":
            continue
        agree = r["noisy"]["by_beta"]["32.0"]["top1_agree"]
        speed = dense / r["B1_ms"]
        ok = speed >= 50 and agree >= 0.99
        out.append((f"IVF ≥ 50× dense at B = 1, β = 32, top-1 ≥ 99 % (N={pre['sizes']['n']:,} "
                    f"d={pre['sizes']['d']}, k={r['k']})",
                    f"{speed:.0f}×, top-1 {agree:.1%}", "≥ 50×, ≥ 99 %", ok))  # fmt: skip
    return out


def store_targets(store: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    npy = next(r for r in store["rows"] if r["path"] == "HTTP npy")
    js = next(r for r in store["rows"] if r["path"] == "HTTP json")
    return [
        (f"bulk store, binary, d = {store['d']}, synchronous=FULL",
         f"{npy['vectors_per_s']:,.0f} vectors/s (JSON {js['vectors_per_s']:,.0f})",
         "≥ 50 000/s", npy["vectors_per_s"] >= 50_000),
    ]  # fmt: skip


def http_targets(http: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    out = []
    rows = [r for r in http["rows"] if r["endpoint"] == "query"]
    for fmt in ("json", "npy"):
        on = [r for r in rows if r["batching"] and r["format"] == fmt]
        off = [r for r in rows if not r["batching"] and r["format"] == fmt]
        c64 = [r for r in on if r["clients"] == 64]
        if c64:
            r = c64[0]
            out.append((f"HTTP at 64 clients ({fmt}) ≥ 75 % of in-process Engine.query at the "
                        "achieved batch",
                        f"{r['rate']:.0f} req/s = {r['vs_engine']:.0%} of {r['engine_rate']:.0f} "
                        f"(batch {r['mean_batch']:.1f}), p99 {r['p99_ms']:.0f} ms",
                        "≥ 75 % (≈ 800 req/s)", r["vs_engine"] >= 0.75))  # fmt: skip
        c16_on = [r for r in on if r["clients"] == 16]
        c16_off = [r for r in off if r["clients"] == 16]
        if c16_on and c16_off:
            gain = c16_on[0]["rate"] / c16_off[0]["rate"]
            out.append((f"micro-batching gain at 16 clients ({fmt})",
                        f"{gain:.1f}× ({c16_off[0]['rate']:.0f} → {c16_on[0]['rate']:.0f} req/s)",
                        "≥ 5×", gain >= 5))  # fmt: skip
    return out


def render() -> str:
    parts: list[str] = []
    checks: list[tuple[str, str, str, bool | None]] = []
    sources = {
        "engine": engine_targets,
        "prefilter384": prefilter_targets,
        "store_http": store_targets,
        "http": http_targets,
    }
    loaded = {name: _load(name) for name in
              ("engine", "prefilter384", "prefilter", "store_http", "store_reload", "http",
               "scale")}  # fmt: skip
    for name, fn in sources.items():
        data = loaded[name]
        if data is not None:
            checks += fn(data)
    parts.append("### Targets\n")
    parts.append("| target | measured | wanted | met |\n|---|---|---|---|")
    for what, value, want, ok in checks:
        mark = "–" if ok is None else ("yes" if ok else "**no**")
        parts.append(f"| {what} | {value} | {want} | {mark} |")
    engine = loaded["engine"]
    if engine is not None:
        c = engine["ceilings"]
        parts.append(
            f"\nCeilings measured in the engine run: GEMM float32 "
            f"{c['gemm_gflops']['float32']:.0f} GFLOP/s, bfloat16 "
            f"{c['gemm_gflops']['bfloat16']:.0f} GFLOP/s, read bandwidth {c['read_gbs']:.1f} GB/s "
            f"(mean of start and end; start {c['read_gbs_start']:.0f}, end "
            f"{c['read_gbs_end']:.0f})."
        )
    for name, title in (("engine", "Engine"), ("prefilter384", "Prefilter at d = 384"),
                        ("prefilter", "Prefilter at d = 128 (defaults' source, see prefilter.md)"),
                        ("store_http", "Bulk store over HTTP"),
                        ("store_reload", "Store and reload (storage layer)"),
                        ("http", "HTTP query"), ("scale", "Largest bank")):  # fmt: skip
        data = loaded[name]
        if data is None:
            continue
        parts.append(f"\n## {title} (`bench/results/{name}.json`)\n")
        table = data.get("markdown") or data.get("table")
        if table:
            parts.append(table.strip())
        elif name == "store_reload":
            parts.append(_store_reload_table(data))
        png = RESULTS / f"{name}.png"
        if png.exists():
            parts.append(f"\n![{title}](../bench/results/{name}.png)")
    return "\n".join(parts) + "\n"


def _store_reload_table(r: dict[str, Any]) -> str:
    full, normal = r["store"]["FULL"], r["store"]["NORMAL"]
    return (
        f"| N × d | store FULL vectors/s | store NORMAL vectors/s | reload s | file MiB |\n"
        f"|---|---|---|---|---|\n"
        f"| {r['n']:,} × {r['d']} | {full['vectors_per_s']:,} | {normal['vectors_per_s']:,} | "
        f"{r['load']['seconds']:.2f} | {r['file_bytes'] / 2**20:,.0f} |"
    )


def render_prefilter() -> str:
    data = _load("prefilter")
    return "" if data is None else data["table"].strip() + "\n"


def splice(doc: Path, body: str) -> bool:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        print(f"{doc} has no {BEGIN} … {END} markers", file=sys.stderr)
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")
    print(f"wrote {doc}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    docs = {DOC: render(), PREFILTER_DOC: render_prefilter()}
    if args.print:
        for body in docs.values():
            print(body)
        return 0
    return 0 if all(splice(doc, body) for doc, body in docs.items()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
