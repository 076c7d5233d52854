"""Capacity of LAM's associative memories, measured: Model A (F = xⁿ), Model B, β regimes.

    python -m bench.capacity           # full run, ≤ ~10 min on 2 cores
    python -m bench.capacity --quick   # reduced sizes, < 60 s (CI runs it)

Full mode writes bench/results/capacity.json (with the markdown tables of docs/math.md in
it) and docs/images/capacity-model-a.png, capacity-model-b.png, beta-regimes.png; quick
mode writes the same names under bench/results/quick/, so it never overwrites the full
results; `--out-dir` sends everything to one folder (the tests use it).

What is measured, and how (docs/math.md, "Capacity", says the same for a reader):

- Model A, F(x) = xⁿ, random ±1 patterns: N_max(d) = the largest N at which ≥ 95 % of the
  N stored patterns are *fixed points* of the asynchronous update (API.md), found per
  random bank by doubling N and then bisecting, on nested banks (the bank of N patterns is
  the first N rows of one random stream). ξ_μ is a fixed point iff no single flip lowers
  E = −Σ_ν F(ξ_ν·σ), and flipping σ_i changes E by S_i = Σ_ν F(m_ν) − F(m_ν − 2 ξ_νi σ_i)
  with m_ν = ξ_ν·σ. Since ξ_νi σ_i = ±1,

      S_i = Σ_ν G(m_ν) + ½ σ_i Σ_ν ξ_νi H(m_ν),   G(m) = F(m) − ½[F(m−2) + F(m+2)],
                                                  H(m) = F(m+2) − F(m−2),

  one (B, N) × (N, d) product for all B patterns and d features at once, exact in float64
  (integers < 2⁵³). The Engine's sweep does O(d) passes per state; the vectorized form is
  the same rule (`engine_check_a` compares the two on small banks, in every run, and the
  JSON records the result). The scaling exponent is the least-squares slope of log N_max
  against log d, with its standard error from the residuals.
- Model B, random ±1/√d (unit-norm) patterns, through the Engine: a memory counts as
  retrieved when the query started at it (or at it with 10 % of its signs flipped) ends,
  after up to 10 steps, within 0.1 of it (a weight of ≈ 0.95 or more on it). N grows by
  doubling; N_max is interpolated (in log N) where the fraction crosses 95 %. Next to it,
  the fraction of memories that meet Ramsauer's fixed-point condition according to
  `engine.diagnostics` (a sufficient condition: it can only under-predict).
- β regimes: one clustered bank (4 prototypes × 64 copies with 10 % of signs flipped,
  d = 128), queries from noisy prototypes at β from 0.1 to 1000: the distance of the
  retrieved state to the nearest memory, to its cluster's mean and to the global mean, the
  largest weight and the participation ratio 1/Σp² (how many memories the state mixes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/capacity.py` works too
    sys.path.insert(0, str(ROOT))

from lam_engine import BankConfig, Engine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"
TARGET = 0.95  # the fraction of memories that must be retrieved
B_RADIUS = 0.1  # Model B: "retrieved" = final state within this distance of the unit memory
B_STEPS = 10
NOISE = 0.1  # fraction of signs flipped in a noisy cue


@dataclass(frozen=True)
class Plan:
    """Sizes of one run. Model A: d values per power n; Model B: d values, β values, N cap."""

    a_dims: dict[int, tuple[int, ...]]
    a_trials: int
    b_dims: tuple[int, ...]
    b_betas: tuple[float, ...]
    b_max_log2n: int
    b_samples: int
    b_trials: int
    b_diag_max: int  # largest N given to engine.diagnostics (it is O(N² d))
    b_curve_dim: int  # the d whose fraction-vs-N curves are plotted
    regime_betas: int  # number of β values in the regime sweep


FULL = Plan(
    # n = 3 starts at d = 32: below it N_max is a handful of patterns (see docs/math.md).
    a_dims={
        2: (64, 128, 256, 512, 1024),
        3: (32, 48, 64, 96, 128, 192, 256),
        4: (16, 24, 32, 48, 64),
    },
    a_trials=8,
    b_dims=(16, 32, 64, 128),
    b_betas=(8.0, 16.0, 32.0),
    b_max_log2n=16,
    b_samples=128,
    b_trials=1,
    b_diag_max=4096,
    b_curve_dim=64,
    regime_betas=36,
)
QUICK = Plan(
    a_dims={2: (64, 128, 256), 3: (32, 64, 128), 4: (16, 24, 32)},
    a_trials=6,
    b_dims=(16, 32),
    b_betas=(8.0, 16.0, 32.0),
    b_max_log2n=10,
    b_samples=48,
    b_trials=1,
    b_diag_max=1024,
    b_curve_dim=32,
    regime_betas=10,
)


# --------------------------------------------------------------------------- fitting


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of log y = a + k log x: slope k, its standard error, intercept a.

    The standard error comes from the residuals (n − 2 degrees of freedom), so it also
    covers a curved log-log relation (the ln d corrections of Model A); nan with 2 points.
    """
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    if lx.size < 2 or not (np.isfinite(lx).all() and np.isfinite(ly).all()):
        raise ValueError("need ≥ 2 positive points")
    design = np.stack([np.ones_like(lx), lx], axis=1)
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    resid = ly - design @ coef
    dof = lx.size - 2
    if dof > 0:
        s2 = float(resid @ resid) / dof
        cov = s2 * np.linalg.inv(design.T @ design)
        se = math.sqrt(cov[1, 1])
    else:
        se = math.nan
    return {"slope": float(coef[1]), "slope_se": se, "intercept": float(coef[0])}


# --------------------------------------------------------------------------- Model A


def _power(n: int) -> Callable[[np.ndarray], np.ndarray]:
    def f(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        for _ in range(n - 1):  # repeated products: exact on integers, faster than pow
            out *= x
        return out

    return f


def fixed_points_a(xi: np.ndarray, n: int, *, chunk: int = 1024) -> np.ndarray:
    """Which rows of the ±1 matrix xi (N, d) are fixed points of Model A with F = xⁿ, (N,) bool.

    S_i ≥ 0 for every i (see the module docstring): no single flip lowers the energy; a
    tie (S_i = 0, exact here) keeps σ_i, as the Engine's sweep does.
    """
    x = xi.astype(np.float64)
    f = _power(n)
    out = np.empty(x.shape[0], dtype=bool)
    for r0 in range(0, x.shape[0], chunk):
        sig = x[r0 : r0 + chunk]  # (B, d): the patterns as states
        m = sig @ x.T  # (B, N) overlaps
        g = f(m) - 0.5 * (f(m - 2.0) + f(m + 2.0))
        h = f(m + 2.0) - f(m - 2.0)
        s = g.sum(axis=1, keepdims=True) + 0.5 * sig * (h @ x)  # (B, d)
        out[r0 : r0 + chunk] = (s >= 0).all(axis=1)
    return out


def n_max_a(d: int, n: int, rng: np.random.Generator) -> int:
    """Largest N with ≥ 95 % of the N patterns fixed points, on one nested random bank."""
    pool = np.empty((0, d), dtype=np.int8)

    def ok(size: int) -> bool:
        nonlocal pool
        if pool.shape[0] < size:  # extend the stream: the bank of N is a prefix of it
            extra = rng.choice(np.array([-1, 1], dtype=np.int8), size=(size - pool.shape[0], d))
            pool = np.concatenate([pool, extra])
        return bool(fixed_points_a(pool[:size], n).mean() >= TARGET)

    lo, hi = 1, 2
    while ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # ok(lo), not ok(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def engine_check_a(cases: Sequence[tuple[int, int, int]], seed: int) -> dict[str, Any]:
    """The vectorized rule against the Engine: one sweep (steps=1) from each stored pattern
    leaves it unchanged iff `fixed_points_a` says it is a fixed point. Cases (n, d, N)."""
    rng = np.random.default_rng(seed)
    engine = Engine.open(None)
    rows = []
    try:
        for k, (n, d, size) in enumerate(cases):
            xi = rng.choice([-1.0, 1.0], size=(size, d))
            name = f"a-check-{k}"
            engine.create_bank(
                name, BankConfig(dim=d, model="A", model_params={"F": "power", "power": n})
            )
            engine.upsert(name, xi.astype(np.float32))
            res = engine.query(name, xi, steps=1, top_k=0, with_payload=False)
            unchanged = np.array(
                [np.array_equal(r.state, x) for r, x in zip(res.results, xi, strict=True)]
            )
            mine = fixed_points_a(xi, n)
            rows.append(
                {
                    "n": n,
                    "d": d,
                    "N": size,
                    "fixed": int(mine.sum()),
                    "agree": bool(np.array_equal(unchanged, mine)),
                }
            )
    finally:
        engine.close()
    return {"cases": rows, "agree": all(r["agree"] for r in rows)}


def run_model_a(plan: Plan, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"criterion": "fixed points (no single flip lowers E)", "powers": {}}
    for n, dims in plan.a_dims.items():
        rows = []
        for d in dims:
            t0 = time.perf_counter()
            rng = np.random.default_rng([seed, n, d])
            vals = np.array([n_max_a(d, n, rng) for _ in range(plan.a_trials)], dtype=np.float64)
            rows.append(
                {
                    "d": d,
                    "n_max_mean": float(vals.mean()),
                    "n_max_sem": float(vals.std(ddof=1) / math.sqrt(vals.size)),
                    "n_max_trials": vals.astype(int).tolist(),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            print(f"  A n={n} d={d}: N_max = {vals.mean():.1f} ± {rows[-1]['n_max_sem']:.1f}")
        ds = [r["d"] for r in rows]
        nm = [r["n_max_mean"] for r in rows]
        fit = fit_power_law(ds, nm)
        # K&H (2016) give N_max ∝ d^{n−1}/ln d: the exponent once that log is divided out.
        fit_log = fit_power_law(ds, [v * math.log(d) for v, d in zip(nm, ds, strict=True)])
        out["powers"][str(n)] = {
            "rows": rows,
            "fit": fit,
            "fit_log_corrected": fit_log,
            "paper_exponent": n - 1,
        }
    # Small banks around capacity, so both fixed and non-fixed patterns occur.
    out["engine_check"] = engine_check_a(
        [(2, 64, 16), (3, 32, 60), (3, 48, 120), (4, 16, 64)], seed
    )
    return out


# --------------------------------------------------------------------------- Model B


def _flip(x: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Each row with round(frac·d) of its signs flipped (at random positions)."""
    out = x.copy()
    k = round(frac * x.shape[1])
    for row in out:
        row[rng.choice(x.shape[1], size=k, replace=False)] *= -1.0
    return out


def _retrieved(
    engine: Engine, name: str, cues: np.ndarray, target: np.ndarray, beta: float
) -> np.ndarray:
    """Which cues end within B_RADIUS of their target memory (bool per cue)."""
    res = engine.query(name, cues, beta=beta, steps=B_STEPS, tol=1e-6, top_k=0, with_payload=False)
    states = np.stack([r.state for r in res.results]).astype(np.float64)
    return np.linalg.norm(states - target, axis=1) <= B_RADIUS


def _crossing(ns: Sequence[float], fracs: Sequence[float]) -> tuple[float, bool]:
    """N where the fraction falls below TARGET for good: log-linear interpolation between
    the last grid point at or above it and the next. The last crossing, not the first,
    because at small N a fraction of few samples dips by one miss (1/16 at N = 16).
    (last N, True) when the last point is still at or above TARGET: a lower bound."""
    above = [k for k, frac in enumerate(fracs) if frac >= TARGET]
    if not above:
        return float(ns[0]), False
    k = above[-1]
    if k == len(ns) - 1:
        return float(ns[-1]), True
    n0, f0, n1, f1 = ns[k], fracs[k], ns[k + 1], fracs[k + 1]
    t = (f0 - TARGET) / (f0 - f1)
    return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))), False


def run_model_b(plan: Plan, seed: int) -> dict[str, Any]:
    engine = Engine.open(None)
    curves: list[dict[str, Any]] = []
    try:
        for d in plan.b_dims:
            for trial in range(plan.b_trials):
                rng = np.random.default_rng([seed, 7, d, trial])
                name = f"b-{d}-{trial}"
                engine.create_bank(name, BankConfig(dim=d, model="B"))
                pool = np.empty((0, d), dtype=np.float64)
                active = set(plan.b_betas)
                per_beta: dict[float, dict[str, list[float]]] = {
                    b: {"N": [], "fixed": [], "noisy": [], "predicted": []} for b in plan.b_betas
                }
                for k in range(3, plan.b_max_log2n + 1):
                    size = 2**k
                    new = rng.choice([-1.0, 1.0], size=(size - pool.shape[0], d)) / math.sqrt(d)
                    engine.upsert(name, new.astype(np.float32))
                    pool = np.concatenate([pool, new])
                    pick = rng.choice(size, size=min(size, plan.b_samples), replace=False)
                    target = pool[pick]
                    noisy = _flip(target, NOISE, rng)
                    for beta in sorted(active):
                        fixed = _retrieved(engine, name, target, target, beta).mean()
                        from_noisy = _retrieved(engine, name, noisy, target, beta).mean()
                        pred = math.nan
                        if size <= plan.b_diag_max:
                            dg = engine.diagnostics(name, beta=beta, limit=0)
                            pred = dg.n_meeting / dg.count
                        rec = per_beta[beta]
                        rec["N"].append(size)
                        rec["fixed"].append(float(fixed))
                        rec["noisy"].append(float(from_noisy))
                        rec["predicted"].append(pred)
                        if fixed < 0.5 and from_noisy < 0.5:
                            active.discard(beta)  # far past capacity: stop growing for this β
                    if not active:
                        break
                engine.delete_bank(name)
                for beta, rec in per_beta.items():
                    n_fixed, lb_fixed = _crossing(rec["N"], rec["fixed"])
                    n_noisy, lb_noisy = _crossing(rec["N"], rec["noisy"])
                    curves.append(
                        {
                            "d": d,
                            "beta": beta,
                            "trial": trial,
                            **rec,
                            "n_max_fixed": n_fixed,
                            "n_max_fixed_lower_bound": lb_fixed,
                            "n_max_noisy": n_noisy,
                            "n_max_noisy_lower_bound": lb_noisy,
                        }
                    )
                    print(
                        f"  B d={d} β={beta:g} trial {trial}: N_max fixed "
                        f"{'≥ ' if lb_fixed else ''}{n_fixed:.0f}, from noisy cue "
                        f"{'≥ ' if lb_noisy else ''}{n_noisy:.0f}"
                    )
    finally:
        engine.close()
    summary = []
    for d in plan.b_dims:
        for beta in plan.b_betas:
            cs = [c for c in curves if c["d"] == d and c["beta"] == beta]
            summary.append(
                {
                    "d": d,
                    "beta": beta,
                    "n_max_fixed": float(np.exp(np.mean([math.log(c["n_max_fixed"]) for c in cs]))),
                    "fixed_lower_bound": any(c["n_max_fixed_lower_bound"] for c in cs),
                    "n_max_noisy": float(np.exp(np.mean([math.log(c["n_max_noisy"]) for c in cs]))),
                    "noisy_lower_bound": any(c["n_max_noisy_lower_bound"] for c in cs),
                }
            )
    return {
        "criterion": f"state within {B_RADIUS} of the unit-norm memory after ≤ {B_STEPS} steps",
        "noise": NOISE,
        "samples_per_point": plan.b_samples,
        "n_cap": 2**plan.b_max_log2n,
        "curves": curves,
        "summary": summary,
    }


# --------------------------------------------------------------------------- β regimes


def run_regimes(plan: Plan, seed: int) -> dict[str, Any]:
    """One clustered bank: as β grows the state goes global mean → cluster mean → memory."""
    rng = np.random.default_rng([seed, 11])
    # Few, large, tight clusters: the cluster mixture is stable over a wide β window (from
    # β·(between-cluster spread) ≳ 1 to β·(within-cluster spread) ≳ 1; see docs/math.md).
    d, clusters, per, spread = 128, 4, 64, 0.1
    protos = rng.choice([-1.0, 1.0], size=(clusters, d))
    flips = np.where(rng.random((clusters, per, d)) < spread, -1.0, 1.0)
    xi = (protos[:, None, :] * flips).reshape(clusters * per, d) / math.sqrt(d)
    label = np.repeat(np.arange(clusters), per)
    means = np.stack([xi[label == c].mean(axis=0) for c in range(clusters)])
    # Cues near the prototypes (not near one memory): equally close to a whole cluster, so
    # the state can settle on the cluster's mixture before β is large enough to pick one.
    # A little Gaussian noise breaks exact ties: ±1 overlaps are integers, and a cue equally
    # close to two memories would otherwise stay a 50/50 mixture at any β.
    pick = np.repeat(np.arange(clusters), 4)
    cues = _flip(protos[pick] / math.sqrt(d), NOISE, rng)
    cues += rng.normal(0.0, 0.3 / math.sqrt(d), size=cues.shape)
    betas = np.geomspace(0.1, 1000.0, plan.regime_betas)
    engine = Engine.open(None)
    try:
        engine.create_bank("regimes", BankConfig(dim=d, model="B"))
        engine.upsert("regimes", xi.astype(np.float32), ids=[str(i) for i in range(len(xi))])
        beta_min = engine.diagnostics("regimes", beta=1.0, limit=0).beta_min
        rows = []
        for beta in betas:
            res = engine.query(
                "regimes", cues, beta=float(beta), steps=200, tol=1e-7, top_k=xi.shape[0],
                with_payload=False,
            )  # fmt: skip
            v = np.stack([r.state for r in res.results]).astype(np.float64)  # (B, d)
            dist = np.linalg.norm(v[:, None, :] - xi[None], axis=2)  # (B, N)
            w = np.array([[m.weight for m in r.matches] for r in res.results])  # sorted desc
            rows.append(
                {
                    "beta": float(beta),
                    "nearest_memory": float(dist.min(axis=1).mean()),
                    "cluster_mean": float(np.linalg.norm(v - means[pick], axis=1).mean()),
                    "global_mean": float(np.linalg.norm(v - xi.mean(axis=0), axis=1).mean()),
                    "max_weight": float(w[:, 0].mean()),
                    "participation": float((1.0 / (w**2).sum(axis=1)).mean()),
                    "converged": float(np.mean([r.converged for r in res.results])),
                }
            )
    finally:
        engine.close()
    return {
        "d": d,
        "clusters": clusters,
        "per_cluster": per,
        "flip_in_cluster": spread,
        "cue": f"prototype/√d, {NOISE:.0%} of signs flipped, + N(0, 0.09/d), 4 per cluster",
        "beta_min": beta_min,
        "rows": rows,
    }


# --------------------------------------------------------------------------- output


def _fmt_n(value: float, lower: bool) -> str:
    text = f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
    return f"≥ {text}" if lower else text


def tables(res: dict[str, Any]) -> str:
    """The markdown tables of docs/math.md's Capacity section."""
    out = []
    if "model_a" in res:
        a = res["model_a"]
        out.append("Model A, F = xⁿ: N_max (≥ 95 % of patterns fixed points), mean ± s.e.\n")
        out.append("| n | d | N_max | trials |\n|---|---|---|---|")
        for n, p in a["powers"].items():
            for r in p["rows"]:
                out.append(
                    f"| {n} | {r['d']} | {r['n_max_mean']:.1f} ± {r['n_max_sem']:.1f} "
                    f"| {len(r['n_max_trials'])} |"
                )
        out.append(
            "\n| n | fitted exponent | with ln d divided out | paper (d^{n−1}) |\n|---|---|---|---|"
        )
        for n, p in a["powers"].items():
            f, fl = p["fit"], p["fit_log_corrected"]
            out.append(
                f"| {n} | {f['slope']:.2f} ± {f['slope_se']:.2f} "
                f"| {fl['slope']:.2f} ± {fl['slope_se']:.2f} | {p['paper_exponent']} |"
            )
    if "model_b" in res:
        b = res["model_b"]
        betas = sorted({s["beta"] for s in b["summary"]})
        out.append(
            "\nModel B, unit-norm ±1/√d patterns: N_max (≥ 95 % retrieved; fixed point / "
            "from a cue with 10 % of signs flipped; ≥ = still ≥ 95 % at the largest N tried)\n"
        )
        out.append("| d | " + " | ".join(f"β = {x:g}" for x in betas) + " |")
        out.append("|---|" + "---|" * len(betas))
        for d in sorted({s["d"] for s in b["summary"]}):
            cells = []
            for beta in betas:
                s = next(s for s in b["summary"] if s["d"] == d and s["beta"] == beta)
                cells.append(
                    _fmt_n(s["n_max_fixed"], s["fixed_lower_bound"])
                    + " / "
                    + _fmt_n(s["n_max_noisy"], s["noisy_lower_bound"])
                )
            out.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot_model_a(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for (n, p), color in zip(res["powers"].items(), ("C0", "C1", "C2"), strict=False):
        d = np.array([r["d"] for r in p["rows"]], dtype=float)
        m = np.array([r["n_max_mean"] for r in p["rows"]])
        e = np.array([r["n_max_sem"] for r in p["rows"]])
        f = p["fit"]
        ax.errorbar(d, m, yerr=e, fmt="o", color=color, capsize=3)
        grid = np.geomspace(d.min(), d.max(), 50)
        ax.plot(
            grid,
            np.exp(f["intercept"]) * grid ** f["slope"],
            "-",
            color=color,
            label=f"n = {n}: fit d^{f['slope']:.2f}±{f['slope_se']:.2f}  (paper d^{int(n) - 1})",
        )
        # The paper's d^{n−1}, through the largest d: finite-d curves approach its slope.
        ax.plot(grid, m[-1] * (grid / d[-1]) ** (int(n) - 1), ":", color=color, lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("d (feature neurons); dotted: slope n − 1 through the largest d")
    ax.set_ylabel("N_max: 95 % of patterns are fixed points")
    ax.set_title("Model A, F(x) = xⁿ, random ±1 patterns")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_model_b(res: dict[str, Any], curve_dim: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4))
    betas = sorted({s["beta"] for s in res["summary"]})
    dims = np.array(sorted({s["d"] for s in res["summary"]}), dtype=float)
    for beta, color in zip(betas, ("C0", "C1", "C2", "C3"), strict=False):
        rows = sorted((s for s in res["summary"] if s["beta"] == beta), key=lambda s: s["d"])
        y = [s["n_max_fixed"] for s in rows]
        lb = [s["fixed_lower_bound"] for s in rows]
        ax.plot(dims, y, "-o", color=color, label=f"β = {beta:g}, fixed point")
        ax.plot(
            dims, [s["n_max_noisy"] for s in rows], "--s", color=color, alpha=0.7,
            label=f"β = {beta:g}, 10 % flipped cue",
        )  # fmt: skip
        for x, v, low in zip(dims, y, lb, strict=True):
            if low:
                ax.annotate("↑", (x, v), ha="center", va="bottom", color=color)
    ax.plot(dims, dims, ":", color="k", label="N = d")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("d")
    ax.set_ylabel("N_max (95 % retrieved)")
    ax.set_title(f"Model B, unit-norm ±1/√d patterns (↑: ≥, cap {res['n_cap']:,})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    for beta, color in zip(betas, ("C0", "C1", "C2", "C3"), strict=False):
        cs = [c for c in res["curves"] if c["d"] == curve_dim and c["beta"] == beta]
        for k, c in enumerate(cs):
            bx.plot(c["N"], c["fixed"], "-o", ms=3, color=color,
                    label=f"β = {beta:g} measured" if k == 0 else None)  # fmt: skip
            pred = f"β = {beta:g} Ramsauer condition (diagnostics)"
            bx.plot(c["N"], c["predicted"], "--", color=color, label=pred if k == 0 else None)
    bx.axhline(TARGET, color="k", lw=0.8, ls=":")
    bx.set_xscale("log", base=2)
    bx.set_xlabel("N (memories)")
    bx.set_ylabel("fraction of memories that are fixed points")
    bx.set_title(f"d = {curve_dim}: measured vs. predicted by /diagnostics")
    bx.grid(True, alpha=0.3)
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_regimes(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    beta = [r["beta"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    ax.plot(beta, [r["nearest_memory"] for r in rows], "-o", ms=3, label="to nearest memory")
    ax.plot(beta, [r["cluster_mean"] for r in rows], "-s", ms=3, label="to its cluster's mean")
    ax.plot(beta, [r["global_mean"] for r in rows], "-^", ms=3, label="to the global mean")
    ax.plot(beta, [r["max_weight"] for r in rows], "-", color="k", lw=1.5, label="max weight p_μ")
    if res["beta_min"]:
        ax.axvline(res["beta_min"], color="gray", ls="--", lw=1)
        ax.annotate("β_min (diagnostics)", (res["beta_min"], 0.9), rotation=90, fontsize=8,
                    ha="right", va="top", color="gray")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("β")
    ax.set_ylabel("distance of the retrieved state (unit-norm memories) / weight")
    ax.set_title(
        f"β regimes, Model B: {res['clusters']} clusters × {res['per_cluster']}, d = {res['d']}"
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, < 60 s")
    parser.add_argument("--out-dir", type=Path, default=None, help="JSON and PNGs go here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=("a", "b", "regimes"), default=None)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.out_dir is not None:
        json_dir = img_dir = args.out_dir
    elif args.quick:
        json_dir = img_dir = RESULTS / "quick"
    else:
        json_dir, img_dir = RESULTS, IMAGES
    json_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    parts = args.only or ["a", "b", "regimes"]
    mode = "quick" if args.quick else "full"
    path = json_dir / "capacity.json"
    res: dict[str, Any] = {}
    if args.only and path.exists():
        # A partial run (--only) updates its parts of an earlier run of the same mode.
        old = json.loads(path.read_text())
        if old.get("mode") == mode:
            res = old
    res.update(
        mode=mode,
        seed=args.seed,
        command="python -m bench.capacity" + (" --quick" if args.quick else ""),
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    res.setdefault("seconds", {})

    def save() -> None:
        # After every part: a run cut short (a CI timeout) still leaves what it measured.
        res["tables_md"] = tables(res)
        path.write_text(json.dumps(res, indent=1, allow_nan=True))

    steps: dict[str, tuple[str, Callable[[], None]]] = {
        "a": ("Model A (F = xⁿ)", lambda: _part_a(res, plan, args.seed, img_dir)),
        "b": ("Model B", lambda: _part_b(res, plan, args.seed, img_dir)),
        "regimes": ("β regimes", lambda: _part_regimes(res, plan, args.seed, img_dir)),
    }
    for part in ("a", "b", "regimes"):
        if part not in parts:
            continue
        title, run = steps[part]
        print(title, flush=True)
        t0 = time.perf_counter()
        run()
        res["seconds"][part] = round(time.perf_counter() - t0, 1)
        save()
    print("\n" + res["tables_md"])
    print(f"\nwrote {path} and PNGs in {img_dir}; seconds per part: {res['seconds']}")
    if "model_a" in res and not res["model_a"]["engine_check"]["agree"]:
        print("the vectorized Model A rule disagrees with the Engine", file=sys.stderr)
        return 1
    return 0


def _part_a(res: dict[str, Any], plan: Plan, seed: int, img_dir: Path) -> None:
    res["model_a"] = run_model_a(plan, seed)
    plot_model_a(res["model_a"], img_dir / "capacity-model-a.png")


def _part_b(res: dict[str, Any], plan: Plan, seed: int, img_dir: Path) -> None:
    res["model_b"] = run_model_b(plan, seed)
    plot_model_b(res["model_b"], plan.b_curve_dim, img_dir / "capacity-model-b.png")


def _part_regimes(res: dict[str, Any], plan: Plan, seed: int, img_dir: Path) -> None:
    res["regimes"] = run_regimes(plan, seed)
    plot_regimes(res["regimes"], img_dir / "beta-regimes.png")


if __name__ == "__main__":
    raise SystemExit(main())
