"""`import lam_engine` changes nothing in the process; `lam_engine.setup()` makes the settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CHILD = """
import json, os, pkgutil, importlib
import faiss, torch

def state():
    return {
        "env": {k: v for k, v in os.environ.items()},
        "precision": torch.get_float32_matmul_precision(),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "blas_threshold": faiss.cvar.distance_compute_blas_threshold,
    }

# The host program's own choices, which an import must leave alone.
torch.set_float32_matmul_precision("medium")
torch.set_num_threads(2)
faiss.omp_set_num_threads(2)
before = state()
import lam_engine
for mod in pkgutil.walk_packages(lam_engine.__path__, "lam_engine."):
    importlib.import_module(mod.name)
imported = state()
lam_engine.setup(threads=1)
after = state()
lam_engine.setup(threads=1)
print(json.dumps([before, imported, after, state()]))
"""


def _run_child() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if "CACHE_CAPACITY" not in k}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_import_changes_nothing_and_setup_sets_everything_idempotently() -> None:
    before, imported, after, again = _run_child()
    assert imported == before  # environment, torch and FAISS settings all untouched
    assert after["env"]["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    assert after["env"]["LRU_CACHE_CAPACITY"] == "64"
    assert after["precision"] == "highest"
    assert after["torch_threads"] == 1 and after["faiss_threads"] == 1
    assert after["blas_threshold"] == 1
    assert again == after
