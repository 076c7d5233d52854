"""The examples run offline in --quick mode and each writes its PNG (a real, non-empty image)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "digits_completion.py": ["digits_completion.png", "digits_recall.png", "digits_recall.json"],
    "energy_trajectories.py": ["energy_trajectories.png"],
    "text_memory.py": ["text_memory.png"],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_examples_quick(tmp_path: Path, server: Any, write_key: str) -> None:
    # Against the session's server: the example processes then never import torch (the
    # embedded default is exercised by the SDK tests), which keeps this test fast.
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    # All three at once: most of their time is importing torch, sklearn and matplotlib.
    procs = {
        script: subprocess.Popen(
            [
                sys.executable,
                str(REPO / "examples" / script),
                "--quick",
                "--out-dir",
                str(tmp_path),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for script in EXAMPLES
    }
    outputs = {s: p.communicate(timeout=240)[0].decode() for s, p in procs.items()}
    for script, proc in procs.items():
        assert proc.returncode == 0, f"{script} failed:\n{outputs[script][-3000:]}"
        for name in EXAMPLES[script]:
            path = tmp_path / name
            assert path.exists(), (script, name)
            if name.endswith(".png"):
                assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    digits = outputs["digits_completion.py"]
    recall_line = next(line for line in digits.splitlines() if line.startswith("50 "))
    assert float(recall_line.split()[1]) >= 0.8  # β = 50, 30 % hidden: most digits recalled
    text = outputs["text_memory.py"]
    assert "embedder: hashed" in text
    correct, total = text.rsplit("correct: ", 1)[1].split()[0].split("/")
    assert int(correct) >= int(total) - 1
    assert "A " in outputs["energy_trajectories.py"] and "C " in outputs["energy_trajectories.py"]
