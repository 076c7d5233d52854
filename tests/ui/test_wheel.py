"""The console ships in the wheel: build it, list it, install it in a fresh venv, serve /ui.

The build runs on a copy of the sources (pyproject, README, the packages), so no build/ or
egg-info lands in the checkout. The venv sees the system's site-packages for the
dependencies (torch, fastapi, ...) and gets only this wheel itself, so `service` must come
from the venv, and the server runs with a cwd outside the repository.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from lam_engine.kernels import native
from service.ui_routes import UI_DIR
from tests.harness import REPO, free_port

PACKAGES = ("lam_engine", "service", "lam_client")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(out)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.append("--no-build-isolation")  # the build backend is here: skip a fresh install
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("lam-*.whl")
    return whl


def test_wheel_holds_every_console_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"service/ui/{p.relative_to(UI_DIR).as_posix()}" for p in UI_DIR.rglob("*.*")}
    assert "service/ui/index.html" in expected and "service/ui/js/app.js" in expected
    missing = expected - names
    assert not missing, f"not in the wheel (pyproject package-data?): {sorted(missing)}"


def test_wheel_holds_the_native_pass_source(wheel: Path) -> None:
    """An installed wheel compiles the native code from its own copy of the C sources."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for src in native.SOURCES:
        assert f"lam_engine/kernels/csrc/{src.name}" in names


def test_installed_wheel_serves_the_console(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # No pip inside the venv (ensurepip is the slow part); this pip installs into it.
    cmd = [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)]
    subprocess.run(cmd, check=True)
    py = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index"]
    pip.append(str(wheel))
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    where = subprocess.run(
        [py, "-c", "import service; print(service.__file__)"],
        cwd=elsewhere, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(venv)), f"service imported from {where}, not the venv"

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAM_")}
    env.update(LAM_PORT=str(port), LAM_DATA_DIR=str(tmp_path / "data"), LAM_DEVICE="cpu")
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([py, "-m", "service"], cwd=elsewhere, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        r = httpx.get(url + "/ui", follow_redirects=True)
        assert r.status_code == 200 and "<title>LAM console</title>" in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert httpx.get(url + "/ui/js/pages/playground.js").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
