"""bench/bench_peer.py without Chroma: workloads, recall, CPU accounting, wrk parsing, checks.

The benchmark itself installs Chroma into a venv and runs for minutes, so it is not run
here; these are the parts whose mistakes would silently skew its numbers.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import bench_peer as bp

PACKAGES = """Package: a
Version: 1
Description: a tool
Description-md5: 0123
 long text

Package: b
Description:   the other tool\t
Description-en: translated, another field

Package: c
Description: a tool
"""


def test_random_workload_shapes_noise_and_truth() -> None:
    w = bp.random_workload(2_000, 64, 50, seed=1)
    assert w.xi.shape == (2_000, 64) and w.queries.shape == (50, 64)
    assert w.xi.dtype == np.float32 and w.queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(w.xi, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(w.queries, axis=1), 1, atol=1e-5)
    # 20 % noise (L2) then renormalized: cos(cue, source) = 1/√(1 + 0.2²) on average.
    cos = np.einsum("ij,ij->i", w.queries, w.xi[w.target1])
    assert np.all(cos > 0.95) and abs(cos.mean() - 1 / np.sqrt(1.04)) < 0.01
    assert len(set(w.target1.tolist())) == 50
    # At this noise the source is the exact nearest memory, and truth is sorted.
    assert np.array_equal(w.truth[:, 0], w.target1)
    s = np.take_along_axis(w.queries @ w.xi.T, w.truth, axis=1)
    assert np.all(np.diff(s, axis=1) <= 0)
    again = bp.random_workload(2_000, 64, 50, seed=1)
    assert np.array_equal(again.queries, w.queries)


def test_exact_topk_matches_a_full_sort_across_chunks() -> None:
    rng = np.random.default_rng(0)
    xi = bp.unit(rng.standard_normal((500, 16)))
    q = bp.unit(rng.standard_normal((37, 16)))
    got = bp.exact_topk(xi, q, 5, chunk=8)
    want = np.argsort(-(q @ xi.T), axis=1)[:, :5]
    assert np.array_equal(got, want)


def test_description_lines_unique_sorted_and_only_the_field() -> None:
    assert bp.description_lines([PACKAGES, "Description: zeta\n"]) == [
        "a tool",
        "the other tool",
        "zeta",
    ]


def test_release_main_lists_prefers_the_release_main_component(tmp_path: Path) -> None:
    names = [
        "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
        "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4",
        "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4",
        "deb.debian.org_debian_dists_bookworm_InRelease",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in bp.release_main_lists(tmp_path)] == [names[0]]
    (tmp_path / names[0]).unlink()
    # No release list: every Packages list rather than nothing.
    assert len(bp.release_main_lists(tmp_path)) == 2


def test_read_list_decompresses(tmp_path: Path) -> None:
    gz = tmp_path / "x_Packages.gz"
    gz.write_bytes(gzip.compress(PACKAGES.encode()))
    plain = tmp_path / "y_Packages"
    plain.write_text(PACKAGES)
    assert bp.read_list(gz) == PACKAGES == bp.read_list(plain)


def test_split_text_is_seeded_disjoint_and_limited() -> None:
    lines = [f"line {i}" for i in range(100)]
    bank, cues = bp.split_text(lines, 10, None, seed=3)
    assert len(bank) == 90 and len(cues) == 10 and not set(bank) & set(cues)
    assert set(bank) | set(cues) == set(lines)
    assert bp.split_text(lines, 10, None, seed=3) == (bank, cues)
    bank, cues = bp.split_text(lines, 10, 30, seed=3)
    assert len(bank) == 20 and len(cues) == 10
    with pytest.raises(ValueError):
        bp.split_text(lines, 30, 30, seed=3)


def test_cache_key_depends_on_every_line_and_its_boundaries() -> None:
    k = bp.lines_key(["ab", "c"])
    assert k == bp.lines_key(["ab", "c"])
    assert k != bp.lines_key(["a", "bc"]) and k != bp.lines_key(["ab", "c", ""])


def test_embed_uses_the_cache_without_the_venv(tmp_path: Path) -> None:
    lines = ["x", "y"]
    emb = np.eye(2, 4, dtype=np.float32)
    np.save(tmp_path / f"minilm-{bp.lines_key(lines)}.npy", emb)
    got = bp.embed(lines, tmp_path / "no-such-python", cache=tmp_path)
    assert np.array_equal(got, emb)


def test_dedupe_rows_keeps_first_occurrences_in_order() -> None:
    a = np.array([[1, 0], [0, 1], [1, 0], [0.5, 0.5], [0, 1]], dtype=np.float32)
    assert bp.dedupe_rows(a).tolist() == [0, 1, 3]


def test_recall() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = [[1, 3, 9], [5, 4, 6]]
    assert bp.recall_at_1(found, truth[:, 0]) == 0.5
    assert bp.recall_at_k(found, truth, 3) == pytest.approx((2 / 3 + 1) / 2)
    assert bp.recall_at_k(found, truth, 1) == 0.5
    assert bp.recall_at_1([[], [4]], truth[:, 0]) == 0.5  # no answer is a miss


def _stat(pid: int, ppid: int, comm: str, ut: int, st: int, cut: int = 0, cst: int = 0) -> str:
    # Fields 3..13 between ppid and utime are irrelevant here.
    mid = " ".join(["0"] * 9)
    return f"{pid} ({comm}) S {ppid} {mid} {ut} {st} {cut} {cst} 20 0 1 0\n"


def test_parse_stat_handles_spaces_and_parens_in_the_name() -> None:
    assert bp.parse_stat(_stat(7, 3, "odd ) name (x", 10, 5, 2, 1)) == (3, 18)


def test_parse_stat_reads_this_process() -> None:
    ppid, ticks = bp.parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert ppid == os.getppid() and ticks >= 0


def test_tree_ticks_sums_descendants_only(tmp_path: Path) -> None:
    procs = {
        10: (1, "server", 100, 50),
        11: (10, "worker", 7, 3),
        12: (11, "grandchild", 1, 1),
        20: (1, "other", 999, 999),
    }
    for pid, (ppid, comm, ut, st) in procs.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, ppid, comm, ut, st))
    (tmp_path / "self").mkdir()  # non-numeric entries are skipped
    (tmp_path / "30").mkdir()  # a process that exited while being read
    assert bp.tree_ticks(10, tmp_path) == 162
    assert bp.tree_ticks(11, tmp_path) == 12
    assert bp.tree_ticks(99, tmp_path) == 0


def test_machine_busy_ticks_excludes_idle_and_iowait(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    assert bp.machine_busy_ticks(tmp_path) == 10 + 1 + 5 + 2 + 3 + 4


def test_cpu_delta_per_request_and_other_load() -> None:
    tck = bp.CLK_TCK
    a = bp.CpuSample(server=0, machine=0, loadgen=0, t=0.0)
    b = bp.CpuSample(server=2 * tck, machine=5 * tck, loadgen=1 * tck, t=10.0)
    d = bp.cpu_delta(a, b, requests=1000)
    assert d["cpu_ms_per_req"] == pytest.approx(2.0)
    assert d["server_cores"] == pytest.approx(0.2)
    assert d["loadgen_cores"] == pytest.approx(0.1)
    assert d["other_cores"] == pytest.approx(0.2)
    assert np.isnan(bp.cpu_delta(a, b, requests=0)["cpu_ms_per_req"])


def test_cpu_sample_sees_this_process_burn_cpu() -> None:
    a = bp.cpu_sample(os.getpid())
    t0 = os.times()
    while os.times().user - t0.user < 0.05:
        pass
    b = bp.cpu_sample(os.getpid())
    assert b.server > a.server and b.machine >= b.server - a.server


def test_parse_wrk_and_percentiles() -> None:
    out = "Running 1s test\nSTATS 10 1 2000000\nH 100 5\nH 200 4\nH 900 1\n"
    r = bp.parse_wrk(out)
    assert (r.requests, r.errors, r.duration_s) == (10, 1, 2.0)
    assert r.hist == {100: 5, 200: 4, 900: 1}
    assert bp.percentile(r.hist, 50) == 100
    assert bp.percentile(r.hist, 51) == 200
    assert bp.percentile(r.hist, 99) == 900
    merged = bp.merge_hists([r.hist, {100: 5, 50: 10}])
    assert merged == {50: 10, 100: 10, 200: 4, 900: 1}
    assert bp.percentile(merged, 50) == 100
    assert np.isnan(bp.percentile({}, 50))
    with pytest.raises(RuntimeError):
        bp.parse_wrk("no stats")


def test_wrk_script_renders() -> None:
    lua = bp.WRK_LUA % {"bodies": "/tmp/b.jsonl", "path": "/v1/banks/x/query"}
    assert 'io.lines("/tmp/b.jsonl")' in lua and '"/v1/banks/x/query"' in lua
    assert "i %% n" not in lua and "i % n + 1" in lua


def test_bodies_are_the_same_cue_bytes_for_both_systems() -> None:
    q = bp.unit(np.random.default_rng(0).standard_normal((1, 8)))
    chroma = bp.dumps(bp.chroma_body(q))
    lam = bp.dumps(bp.lam_body(q, 0))
    cue = bp.dumps({"x": q})[5:-1]
    assert cue in chroma and cue in lam
    assert b'"steps":0' in lam and b"steps" not in bp.dumps(bp.lam_body(q, None))


def _res(rows: dict[tuple[str, str, int], tuple[float, float]]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for (wl, name, c), (rate, p50) in rows.items():
        system, mode = name.split(" ", 1)
        r5 = 1.0 if "0" in mode else 0.5
        out.append({"wl": wl, "system": system, "mode": mode, "clients": c, "rate": rate,
                    "p50_ms": p50, "recall1": 1.0, "recall5": r5})  # fmt: skip
    wls: dict[str, dict[str, Any]] = {}
    for r in out:
        wls.setdefault(r["wl"], {"rows": []})["rows"].append(r)
    return {"sizes": {"clients": (1, 16)}, "workloads": wls}


def test_ratios_compute_the_issue_checks() -> None:
    rows = {}
    for wl in ("random", "text"):
        rows[(wl, "Chroma HNSW", 1)] = (100.0, 5.0)
        rows[(wl, "Chroma HNSW", 16)] = (200.0, 50.0)
        rows[(wl, "LAM steps 0", 1)] = (300.0, 2.0)
        rows[(wl, "LAM steps 0", 16)] = (1000.0, 10.0)
        rows[(wl, "LAM steps 1 (default)", 1)] = (50.0, 10.0)
        rows[(wl, "LAM steps 1 (default)", 16)] = (300.0, 40.0)
        rows[(wl, "LAM IVF, steps 1", 1)] = (400.0, 2.0)
        rows[(wl, "LAM IVF, steps 1", 16)] = (900.0, 12.0)
    checks = {(c["workload"], c["check"]): c for c in bp.ratios(_res(rows))}
    c = checks[("random", "steps 0: req/s at 16 clients / Chroma")]
    assert c["value"] == pytest.approx(5.0) and c["met"]
    assert checks[("random", "steps 0: p50 at 1 client / Chroma")]["value"] == pytest.approx(0.4)
    assert not checks[("random", "steps 1 (default): req/s at 16 clients / Chroma")]["met"]
    assert checks[("random", "IVF, steps 1: p50 at 1 client / Chroma")]["met"]
    assert checks[("text", "IVF, steps 1: p50 at 1 client / no prefilter")]["value"] == 0.2
    # A mode that did not run is reported, not silently dropped.
    missing = checks[("random", "LAM IVF, steps 0")]
    assert missing["met"] is None and np.isnan(missing["value"])
