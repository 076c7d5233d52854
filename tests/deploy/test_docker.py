"""Both Dockerfiles pass hadolint and say what the operations guide promises; compose is wired."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_dockerfile import (
    Dockerfile,
    exec_form,
    parse,
    parse_env,
    parse_healthcheck,
)
from tests.deploy.deploy_support import require_tool, run_tool

DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")


def load(repo: Path, name: str) -> Dockerfile:
    return parse((repo / "docker" / name).read_text())


def final_env(df: Dockerfile) -> dict[str, str]:
    env: dict[str, str | None] = {"PATH": "/usr/bin"}
    for ins in df.stages[-1].all("ENV"):
        env.update(parse_env(ins.args, env))
    return {k: v or "" for k, v in env.items()}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_is_clean(repo: Path, name: str) -> None:
    hadolint = require_tool("hadolint")
    proc = run_tool([hadolint, "--no-color", str(repo / "docker" / name)])
    assert proc.returncode == 0, f"hadolint {name}:\n{proc.stdout}{proc.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # The linter really runs and fails: a root `latest` image with apt-get and no pin.
    hadolint = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\nCMD python -m service\n")
    proc = run_tool([hadolint, "--no-color", str(bad)])
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # latest tag


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_stage_contract(repo: Path, name: str) -> None:
    df = load(repo, name)
    runtime = df.stages[-1]
    env = final_env(df)
    assert env["LAM_HOST"] == "0.0.0.0"  # a container must listen beyond loopback
    assert env["LAM_DATA_DIR"] == "/data"
    assert env["LAM_PORT"] == "8000"
    assert env["LAM_DEVICE"] == ("cuda" if name.endswith("cuda") else "cpu")
    assert env["PATH"].startswith("/opt/venv/bin:")
    expose = runtime.last("EXPOSE")
    assert expose is not None and expose.args.split() == [env["LAM_PORT"]]
    volume = runtime.last("VOLUME")
    assert volume is not None and exec_form(volume.args) == ["/data"]
    stopsignal = runtime.last("STOPSIGNAL")
    assert stopsignal is not None and stopsignal.args == "SIGTERM"
    cmd = runtime.last("CMD")
    assert cmd is not None and exec_form(cmd.args) == ["python", "-m", "service"]
    user = runtime.last("USER")
    uid_arg = runtime.last("ARG")
    assert user is not None and uid_arg is not None
    assert uid_arg.args == "LAM_UID=10001" and user.args == "${LAM_UID}:${LAM_UID}"
    hc = runtime.last("HEALTHCHECK")
    assert hc is not None
    options, command = parse_healthcheck(hc.args)
    assert command[0] == "python" and "/healthz" in command[-1] and "LAM_PORT" in command[-1]
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()
    # Nothing is pip-installed at run time: the runtime stage only copies the venv.
    assert not any("pip" in r.args for r in runtime.all("RUN"))
    copies = [c.args for c in runtime.all("COPY")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_torch_is_installed_first_at_the_pinned_version(repo: Path, name: str) -> None:
    df = load(repo, name)
    builder = df.stage("builder")
    args: dict[str, str | None] = {}
    for ins in builder.all("ARG"):
        args.update({k: v for k, v in (a.partition("=")[::2] for a in ins.args.split())})
    pins = dict(
        line.split("==")
        for line in (repo / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert args["TORCH_VERSION"] == pins["torch"]
    runs = [r.args for r in builder.all("RUN") if "pip install" in r.args]
    # The CPU image adds one: PyPI's zig compiles the native pass, then leaves the venv.
    native = [r for r in runs if "lam_engine.kernels.build" in r]
    assert len(native) == (1 if name == "Dockerfile" else 0)
    for run in native:
        assert "ziglang==" in run and "pip uninstall -y" in run and "LAM_NATIVE_CACHE=" in run
    runs = [r for r in runs if r not in native]
    assert len(runs) == 2
    torch_run, project_run = runs
    assert "--index-url ${TORCH_INDEX_URL}" in torch_run and "torch==${TORCH_VERSION}" in torch_run
    # `.` plus the extras of --build-arg LAM_EXTRAS (none by default; cluster: Ray).
    assert '-c constraints.txt ".${LAM_EXTRAS:+[$LAM_EXTRAS]}"' in project_run
    index = args["TORCH_INDEX_URL"] or ""
    if name == "Dockerfile":
        assert df.stages[-1].base == "python:3.11-slim"
        assert index == "https://download.pytorch.org/whl/cpu"
    else:
        base = df.global_args["CUDA_IMAGE"] or ""
        m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu[\d.]+", base)
        assert m, base
        # The torch wheel's CUDA must be the base image's (cu128 <-> 12.8).
        assert index == f"https://download.pytorch.org/whl/cu{m[1]}{m[2]}"


def test_dockerignore_admits_what_the_build_needs(repo: Path) -> None:
    from tests.deploy.deploy_dockerfile import DockerIgnore

    ignore = DockerIgnore.parse((repo / ".dockerignore").read_text())
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "service/__main__.py",
                   "lam_engine/__init__.py", "lam_client/__init__.py"):  # fmt: skip
        assert not ignore.excluded(needed), needed
    for unwanted in (".git/config", "data/lam.sqlite3", "tests/conftest.py", ".venv/bin/python",
                     "service/__pycache__/main.cpython-311.pyc", "bench/run.py"):  # fmt: skip
        assert ignore.excluded(unwanted), unwanted


# ---- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict:
    return yaml.safe_load((repo / "docker" / "compose.yaml").read_text())


def host_path(repo: Path, mount: str) -> tuple[Path, str]:
    src, dst = mount.split(":")[:2]
    return (repo / "docker" / src).resolve(), dst


def test_compose_mounts_exist(repo: Path, compose: dict) -> None:
    named = set(compose["volumes"])
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            src = mount.split(":")[0]
            if src.startswith("."):
                assert host_path(repo, mount)[0].exists(), f"{name}: {mount}"
            else:
                assert src in named, f"{name}: undeclared volume {src}"
        build = svc.get("build")
        if build:
            context = (repo / "docker" / build["context"]).resolve()
            assert context == repo and (context / build["dockerfile"]).is_file()


def test_compose_services(repo: Path, compose: dict) -> None:
    services = compose["services"]
    lam, gpu = services["lam"], services["lam-gpu"]
    assert lam["volumes"] == ["lam-data:/data"] and gpu["volumes"] == ["lam-gpu-data:/data"]
    assert "profiles" not in lam and gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    # Graceful stop must outlast the service's drain (LAM_SHUTDOWN_TIMEOUT_S, 30 s).
    assert int(lam["stop_grace_period"].rstrip("s")) > 30
    mounts = dict(host_path(repo, m)[::-1] for m in services["grafana"]["volumes"] if m[0] == ".")
    provisioning = mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "lam.yaml").read_text())
    dash_dir = provider["providers"][0]["options"]["path"]
    dashboards = [p for dst, p in mounts.items() if dst.startswith(dash_dir + "/")]
    assert dashboards == [(repo / "deploy" / "grafana" / "lam-dashboard.json").resolve()]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_prometheus_scrapes_the_lam_services(repo: Path, compose: dict) -> None:
    prom = yaml.safe_load((repo / "docker" / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "lam"  # the alert rules select up{job="lam"}
    sd = job["dns_sd_configs"][0]
    assert set(sd["names"]) == {"lam", "lam-gpu"} <= set(compose["services"])
    assert sd["port"] == 8000
    mounts = [m for m in compose["services"]["prometheus"]["volumes"] if m.startswith(".")]
    rules = {dst for src, dst in (host_path(repo, m) for m in mounts)
             if src == (repo / "deploy/prometheus/lam-rules.yaml").resolve()}  # fmt: skip
    (rules_dst,) = rules
    (pattern,) = prom["rule_files"]
    assert Path(rules_dst).match("/etc/prometheus/" + pattern)
