"""The `lam` CLI through typer's CliRunner: embedded (--path) for speed, plus HTTP (--url)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lam_client.cli import app

runner = CliRunner()


def lam(*args: str, path: Path | None = None, ok: bool = True) -> Any:
    argv = [*(["--path", str(path)] if path else []), *args]
    result = runner.invoke(app, argv, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, (argv, result.output)
    return result


def lam_json(path: Path, *args: str) -> Any:
    result = lam("--json", *args, path=path)
    return json.loads(result.stdout)  # nothing but one JSON document on stdout


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def xi() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((10, 6)).astype(np.float32)  # (N, d)


def test_bank_commands(data: Path) -> None:
    created = lam_json(data, "bank", "create", "demo", "--dim", "6", "--beta", "4")
    assert created["name"] == "demo" and created["dim"] == 6 and created["beta"] == 4.0
    assert [b["name"] for b in lam_json(data, "bank", "list")["banks"]] == ["demo"]
    assert lam_json(data, "bank", "show", "demo")["count"] == 0
    human = lam("bank", "list", path=data).stdout
    assert "demo" in human and "float32" in human
    assert lam_json(data, "bank", "delete", "demo") == {"deleted": "demo"}
    assert lam_json(data, "bank", "list")["banks"] == []


def test_errors_exit_non_zero_with_code(data: Path) -> None:
    r = lam("--json", "bank", "show", "nope", path=data, ok=False)
    assert r.exit_code == 3 and r.stdout == ""
    assert "bank_not_found" in r.stderr
    lam("bank", "create", "b", "--dim", "3", path=data)
    r = lam("bank", "create", "b", "--dim", "4", path=data, ok=False)
    assert r.exit_code == 4 and "bank_exists" in r.stderr
    r = lam("bank", "create", "bad name!", "--dim", "4", path=data, ok=False)
    assert r.exit_code == 6 and "invalid_parameter" in r.stderr


def test_load_formats_and_query(data: Path, tmp_path: Path, xi: np.ndarray) -> None:
    lam("bank", "create", "m", "--dim", "6", "--beta", "20", path=data)
    npy = tmp_path / "v.npy"
    np.save(npy, xi[:4])
    csv = tmp_path / "v.csv"
    csv.write_text(
        "id,"
        + ",".join(f"x{i}" for i in range(6))
        + "\n"
        + "\n".join(f"c{i}," + ",".join(str(float(x)) for x in xi[i]) for i in range(4, 7))
    )
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({"id": f"j{i}", "vector": xi[i].tolist(), "payload": {"i": i}})
            for i in range(7, 10)
        )
    )
    assert lam_json(data, "load", "m", str(npy), "--batch-size", "3")["count"] == 4
    assert lam_json(data, "load", "m", str(csv))["count"] == 7
    summary = lam_json(data, "load", "m", str(jsonl), "--batch-size", "2")
    assert summary == {"bank": "m", "stored": 3, "skipped_batches": 0, "count": 10}
    res = lam_json(data, "query", "m", "--vector", json.dumps(xi[8].tolist()), "--top-k", "2")
    top = res["results"][0]["matches"][0]
    assert top["id"] == "j8" and top["payload"] == {"i": 8} and top["weight"] > 0.5
    qfile = tmp_path / "q.npy"
    np.save(qfile, xi[[5, 8]])
    res = lam_json(data, "query", "m", "--file", str(qfile), "--top-k", "1")
    assert [r["matches"][0]["id"] for r in res["results"]] == ["c5", "j8"]
    h = 20.0 * xi.astype(np.float64) @ xi[8]  # (N,): one Model B step at the bank's β = 20
    p = np.exp(h - h.max()) / np.exp(h - h.max()).sum()
    np.testing.assert_allclose(res["results"][1]["state"], p @ xi, rtol=1e-4, atol=1e-5)
    human = lam("query", "m", "--file", str(qfile), path=data).stdout
    assert "c5" in human and "energy" in human
    r = lam("query", "m", path=data, ok=False)
    assert r.exit_code == 2  # neither --vector nor --file


def test_load_resume_skips_recorded_batches(data: Path, tmp_path: Path, xi: np.ndarray) -> None:
    lam("bank", "create", "r", "--dim", "6", path=data)
    lines = [json.dumps({"id": f"k{i}", "vector": xi[i].tolist()}) for i in range(10)]
    for i in (6, 7):  # the 4th batch of 2 has the wrong dimension: the store answers 422
        lines[i] = json.dumps({"id": f"k{i}", "vector": [1.0, 2.0]})
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines))
    r = lam("--json", "load", "r", str(src), "--batch-size", "2", path=data, ok=False)
    assert r.exit_code == 6 and "dimension_mismatch" in r.stderr
    state = json.loads((tmp_path / "bad.jsonl.lam-load.json").read_text())
    assert state["done"] == 3 and state["bank"] == "r"
    assert lam_json(data, "bank", "show", "r")["count"] == 6
    # Resume into a fresh bank: the 3 recorded batches are skipped, not re-sent.
    good = tmp_path / "good.jsonl"
    lines[6:8] = [json.dumps({"id": f"k{i}", "vector": xi[i].tolist()}) for i in (6, 7)]
    good.write_text("\n".join(lines))
    lam("bank", "create", "r2", "--dim", "6", path=data)
    fp = json.loads((tmp_path / "bad.jsonl.lam-load.json").read_text())
    st = good.stat()
    fp.update(bank="r2", size=st.st_size, mtime_ns=st.st_mtime_ns)
    (tmp_path / "good.jsonl.lam-load.json").write_text(json.dumps(fp))
    out = lam_json(data, "load", "r2", str(good), "--batch-size", "2", "--resume")
    assert out == {"bank": "r2", "stored": 4, "skipped_batches": 3, "count": 4}
    ids = [
        m["id"]
        for m in lam_json(
            data, "query", "r2", "--vector", json.dumps(xi[9].tolist()), "--top-k", "10"
        )["results"][0]["matches"]
    ]
    assert sorted(ids) == ["k6", "k7", "k8", "k9"]
    assert not (tmp_path / "good.jsonl.lam-load.json").exists()  # removed once complete
    # A state file for another batch size is ignored: everything is loaded.
    (tmp_path / "good.jsonl.lam-load.json").write_text(json.dumps({**fp, "batch_size": 5}))
    assert lam_json(data, "load", "r2", str(good), "--batch-size", "2", "--resume")["stored"] == 10


def test_energy_diagnostics_export_import(data: Path, tmp_path: Path) -> None:
    lam("bank", "create", "e", "--dim", "3", "--beta", "2", path=data)
    np.save(tmp_path / "eye.npy", np.eye(3, dtype=np.float32))
    lam("load", "e", str(tmp_path / "eye.npy"), path=data)
    e = lam_json(data, "energy", "e", "--vector", "[[1, 0, 0], [0, 0, 0]]")
    expect = [0.5 - np.log(np.exp(2.0) + 2) / 2, -np.log(3) / 2]
    np.testing.assert_allclose(e["energies"], expect, rtol=1e-6)
    d = lam_json(data, "diagnostics", "e", "--beta", "50")
    assert d["count"] == 3 and d["M"] == pytest.approx(1.0)
    assert "separable" in lam("diagnostics", "e", path=data).stdout
    snap = tmp_path / "e.zip"
    assert lam_json(data, "export", "e", str(snap))["bytes"] == snap.stat().st_size > 0
    assert lam_json(data, "import", "e2", str(snap))["count"] == 3
    r = lam("import", "e2", str(snap), path=data, ok=False)
    assert r.exit_code == 4 and "bank_exists" in r.stderr
    assert lam_json(data, "import", "e2", str(snap), "--replace")["count"] == 3


def test_cli_over_http(server: Any, write_key: str, bank_name: str) -> None:
    base = ["--url", server.url, "--api-key", write_key, "--json"]
    assert json.loads(lam(*base, "bank", "create", bank_name, "--dim", "2").stdout)["dim"] == 2
    names = [b["name"] for b in json.loads(lam(*base, "bank", "list").stdout)["banks"]]
    assert bank_name in names
    r = lam("--url", server.url, "--json", "bank", "list", ok=False)  # no key
    assert r.exit_code == 5 and r.stdout == "" and "401" in r.stderr
    r = lam("--url", "http://127.0.0.1:9", "--timeout", "2", "bank", "list", ok=False)
    assert r.exit_code == 7 and "connection_failed" in r.stderr


def test_serve_runs_the_service_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import service.__main__ as service_main

    seen: dict[str, str] = {}
    monkeypatch.setattr(
        service_main,
        "main",
        lambda: seen.update({k: os.environ[k] for k in ("LAM_HOST", "LAM_PORT", "LAM_DATA_DIR")}),
    )
    for k in ("LAM_HOST", "LAM_PORT", "LAM_DATA_DIR"):
        monkeypatch.delenv(k, raising=False)
    lam("serve", "--port", "8123", "--data-dir", "/tmp/x")
    assert seen == {"LAM_HOST": "127.0.0.1", "LAM_PORT": "8123", "LAM_DATA_DIR": "/tmp/x"}


# ---- global options after the subcommand (issue 15) -----------------------------------------
def test_global_options_after_the_subcommand(data: Path) -> None:
    def banks(*argv: str) -> list[str]:
        result = runner.invoke(app, list(argv), catch_exceptions=False)
        assert result.exit_code == 0, (argv, result.output)
        return [b["name"] for b in json.loads(result.stdout)["banks"]]

    p = str(data)
    lam("bank", "create", "g", "--dim", "2", path=data)
    assert banks("bank", "list", "--json", "--path", p) == ["g"]
    assert banks("--json", "bank", "list", "--path", p) == ["g"]
    assert banks("--path", p, "bank", "list", "--json") == ["g"]
    assert banks("bank", "list", f"--path={p}", "--json") == ["g"]
    made = lam("bank", "create", "h", "--dim", "3", "--json", path=data)
    assert json.loads(made.stdout)["dim"] == 3


def test_url_and_api_key_after_the_subcommand(server: Any, write_key: str) -> None:
    for argv in (
        ["bank", "list", "--json", "--url", server.url, "--api-key", write_key],
        ["--json", "bank", "list", "--url", server.url, "--api-key", write_key],
        ["bank", "list", "--url", server.url, "--json", f"--api-key={write_key}"],
    ):
        result = runner.invoke(app, argv, catch_exceptions=False)
        assert result.exit_code == 0, (argv, result.output)
        assert isinstance(json.loads(result.stdout)["banks"], list)
    r = runner.invoke(app, ["bank", "list", "--url", server.url, "--json"])  # no key
    assert r.exit_code == 5 and r.stdout == "" and "401" in r.stderr


def test_hoist_moves_only_the_global_options() -> None:
    from lam_client.cli._app import GlobalOptionsAnywhere, hoist

    group = typer.main.get_command(app)
    assert isinstance(group, GlobalOptionsAnywhere)
    argv = ["query", "b", "--top-k", "3", "--url", "U", "--json", "--", "--json"]
    assert hoist(argv, group.params) == [
        "--url",
        "U",
        "--json",
        "query",
        "b",
        "--top-k",
        "3",
        "--",
        "--json",
    ]


def test_filter_options_count_and_delete(data: Path, tmp_path: Path) -> None:
    import hashlib

    lam("bank", "create", "f", "--dim", "3", "--beta", "2", path=data)
    np.save(tmp_path / "eye.npy", np.eye(3, dtype=np.float32))
    lam("load", "f", str(tmp_path / "eye.npy"), path=data)
    e1 = hashlib.sha256(np.eye(3, dtype="<f4")[0].tobytes()).hexdigest()
    only = json.dumps({"must": [{"has_id": [e1]}]})
    e = lam_json(data, "energy", "f", "--vector", "[[1, 0, 0]]", "--filter", only)
    np.testing.assert_allclose(e["energies"], [0.5 - 1.0], rtol=1e-6)  # one memory: ½ − ξ·v
    q = lam_json(data, "query", "f", "--vector", "[1, 0.5, 0.5]", "--filter", only)
    assert [m["id"] for m in q["results"][0]["matches"]] == [e1]
    assert lam_json(data, "count", "f") == {"count": 3}
    assert lam_json(data, "count", "f", "--filter", only) == {"count": 1}
    assert lam_json(data, "delete", "f", "--filter", only) == {"deleted": 1}
    assert lam_json(data, "count", "f") == {"count": 2}
    r = lam("delete", "f", path=data, ok=False)
    assert r.exit_code == 2
    r = lam("count", "f", "--filter", '{"must": [{"key": ""}]}', path=data, ok=False)
    assert r.exit_code == 6 and "invalid_filter" in r.stderr


def test_forgetting_commands_and_sdk(data: Path) -> None:
    """lam bank create/update with a lifetime and a half-life, lam reinforce (embedded)."""
    bank = lam_json(data, "bank", "create", "fg", "--dim", "2", "--half-life-s", "60")
    assert bank["half_life_s"] == 60.0 and bank["default_ttl_s"] is None
    bank = lam_json(data, "bank", "update", "fg", "--default-ttl-s", "30", "--half-life-s", "none")
    assert bank["default_ttl_s"] == 30.0 and bank["half_life_s"] is None
    from lam_client import Client

    with Client(path=data) as c:
        c.store("fg", [[1.0, 0.0], [0.0, 1.0]], ids=["a", "b"], strengths=[2.0, None])
        assert c.get("fg", "a").strength == 2.0 and c.get("fg", "b").expires_at is not None
    assert lam_json(data, "reinforce", "fg", "a", "zz", "--strength", "3") == {"reinforced": 1}
    with Client(path=data) as c:
        a = c.get("fg", "a")
        assert a.strength == 3.0 and a.reinforced_at is not None
