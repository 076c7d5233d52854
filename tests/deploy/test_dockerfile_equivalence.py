"""docker/Dockerfile, replayed without Docker: the image's Python environment really serves.

The builder stage's instructions run in order in a fake root under tmp_path: a
fresh venv (no system site-packages), the build context as .dockerignore lets it
through, and every RUN verbatim except `--index-url` (the CPU index is not
reachable here; pip's configured find-links supply the same torch 2.13.0 CPU
wheel). Then CMD starts with the runtime stage's ENV (data dir and port moved to
tmp_path / a free loopback port) and the HEALTHCHECK command must answer 0 —
and stop answering 0 once the server has stopped on STOPSIGNAL.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deploy_dockerfile import (
    DockerIgnore,
    Instruction,
    copy_context,
    exec_form,
    expand,
    parse,
    parse_arg,
    parse_duration,
    parse_env,
    parse_healthcheck,
)
from tests.deploy.deploy_support import free_port

# Image paths that the replay moves under the fake root.
_IMAGE_PATH = re.compile(r"(?<![\w./-])/(?:opt|src|data|app)(?=[/\s:\"']|$)")
_INDEX_URL = re.compile(r"\s+(?:--index-url|--extra-index-url|-i)(?:=|\s+)\S+")
_KEEP_ENV = {"HOME", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
             "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}  # fmt: skip
PIP_TIMEOUT = 900  # s, for one RUN: torch is a 190 MB wheel to unpack on a shared machine


class Replay:
    """The state of a stage being replayed: env, ARGs, working directory."""

    def __init__(self, root: Path, context: Path, global_args: dict[str, str | None]) -> None:
        self.root = root
        self.context = context
        self.global_args = global_args
        host_bin = str(Path(sys.executable).parent)  # `python` = this interpreter (3.11)
        # A clean environment, as in a container: only what pip needs to reach its index.
        self.env: dict[str, str] = {
            k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.upper() in _KEEP_ENV
        }
        self.env["PATH"] = os.pathsep.join([host_bin, "/usr/local/bin", "/usr/bin", "/bin"])
        self.args: dict[str, str | None] = {}
        root.mkdir(parents=True, exist_ok=True)
        self.cwd = root  # Docker's default WORKDIR is /

    def map_paths(self, text: str) -> str:
        return _IMAGE_PATH.sub(lambda m: str(self.root) + m.group(), text)

    def scope(self) -> dict[str, str | None]:
        return {**self.args, **self.env}

    def apply(self, ins: Instruction, *, run: bool) -> None:
        if ins.keyword == "ARG":
            for key, default in parse_arg(ins.args).items():
                self.args[key] = default if default is not None else self.global_args.get(key)
        elif ins.keyword == "ENV":
            for key, value in parse_env(ins.args, self.scope()).items():
                self.env[key] = self.map_paths(value)
        elif ins.keyword == "WORKDIR":
            self.cwd = Path(self.map_paths(expand(ins.args, self.scope())))
            self.cwd.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY" and not ins.args.startswith("--from"):
            src, dst = ins.args.split()
            assert src == ".", "replay handles `COPY . <dir>` only"
            target = self.cwd / dst
            shutil.copytree(self.context, target, dirs_exist_ok=True)
        elif ins.keyword == "RUN" and run:
            command = _INDEX_URL.sub("", self.map_paths(expand(ins.args, self.scope())))
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT,
            )
            assert proc.returncode == 0, (
                f"RUN {command}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )

    def which(self, argv0: str) -> str:
        found = shutil.which(argv0, path=self.env["PATH"])
        assert found, f"{argv0} not on the image PATH {self.env['PATH']}"
        return found


def healthcheck(argv: list[str], env: dict[str, str], timeout: float) -> int:
    try:
        return subprocess.run(argv, env=env, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[Path]:
    """The fake image root; removed afterwards (a venv with torch is ~1 GB)."""
    root = tmp_path / "rootfs"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_image_environment_serves_and_passes_its_healthcheck(
    repo: Path, tmp_path: Path, rootfs: Path
) -> None:
    dockerfile = parse((repo / "docker" / "Dockerfile").read_text())
    builder, runtime = dockerfile.stage("builder"), dockerfile.stages[-1]
    assert runtime.base == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim", (
        "the replay uses this interpreter, so it must be the image's Python"
    )

    context = tmp_path / "context"
    copied = copy_context(repo, context, DockerIgnore.parse((repo / ".dockerignore").read_text()))
    assert "pyproject.toml" in copied and not any(c.startswith("tests/") for c in copied)

    root = rootfs
    build = Replay(root, context, dockerfile.global_args)
    for ins in builder.instructions:
        build.apply(ins, run=True)
    venv = root / "opt" / "venv"
    assert (venv / "pyvenv.cfg").read_text().count("include-system-site-packages = false") == 1
    # The Kubernetes pods' entry point (deploy/overlays/cluster), on the image's PATH.
    assert os.access(venv / "bin" / "lam-ray-node", os.X_OK)

    # Runtime stage: RUNs create the user and /data (root-only, not replayed); the
    # venv is the builder's, at the same path.
    image = Replay(root, context, dockerfile.global_args)
    for ins in runtime.instructions:
        image.apply(ins, run=False)
    python = image.which("python")
    assert Path(python).parent == venv / "bin"
    installed = subprocess.run(
        [python, "-c", "import service, torch; print(service.__file__); print(torch.__version__)"],
        cwd=tmp_path, env=image.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    service_file, torch_version = installed.stdout.split()
    assert Path(service_file).is_relative_to(venv), "service must come from the venv, not the repo"
    assert torch_version == "2.13.0+cpu"

    port = free_port()
    env = dict(image.env)
    env.update(LAM_HOST="127.0.0.1", LAM_PORT=str(port), LAM_DATA_DIR=str(tmp_path / "data"))
    expose = runtime.last("EXPOSE")
    assert expose is not None and expose.args == image.env["LAM_PORT"]  # only the port is moved

    cmd_ins, hc_ins = runtime.last("CMD"), runtime.last("HEALTHCHECK")
    stop_ins = runtime.last("STOPSIGNAL")
    assert cmd_ins is not None and hc_ins is not None and stop_ins is not None
    cmd = exec_form(cmd_ins.args)
    options, check = parse_healthcheck(hc_ins.args)
    check = [image.which(check[0]), *check[1:]]
    check_timeout = parse_duration(options["timeout"])
    workdir = image.cwd
    log = tmp_path / "server.log"
    with log.open("wb") as fh:
        server = subprocess.Popen(
            [image.which(cmd[0]), *cmd[1:]],
            cwd=workdir,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        # As Docker would: retry the check until start-period + retries * interval.
        budget = parse_duration(options["start-period"]) + int(options["retries"]) * parse_duration(
            options["interval"]
        )
        deadline = time.monotonic() + budget
        rc = None
        while time.monotonic() < deadline and server.poll() is None:
            rc = healthcheck(check, env, check_timeout)
            if rc == 0:
                break
            time.sleep(1)
        assert server.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
        assert rc == 0, f"HEALTHCHECK never passed:\n{log.read_text()[-3000:]}"
    finally:
        server.send_signal(signal.Signals[stop_ins.args])
        try:
            code = server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
            pytest.fail(f"{stop_ins.args} did not stop the server within 40 s")
    # uvicorn re-raises the signal after its graceful shutdown, so the status is that
    # signal (143 in Docker) or 0; what matters is that the lifespan shutdown ran.
    assert code in (0, -signal.Signals[stop_ins.args].value), f"exit {code}:\n{log.read_text()}"
    assert "Application shutdown complete" in log.read_text()
    # The check is not vacuous: with the server gone it fails.
    assert healthcheck(check, env, check_timeout) != 0
