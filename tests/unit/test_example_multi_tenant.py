"""examples/multi_tenant_memory.py runs (embedded, offline) and shows what it claims: the
filter keeps users apart, if_novel refuses a near-copy, reinforce brings a memory back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_multi_tenant_example(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    script = REPO / "examples" / "multi_tenant_memory.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "stored ['bob-new'], skipped bob-again" in out
    start_end = {
        line.split()[0]: [float(x) for x in line.split()[1::2]]
        for line in out.splitlines()
        if line.startswith("  alice-")
    }
    # Reinforced on day 7, alice-day0 ends above the never-reinforced alice-day2.
    assert start_end["alice-day0"][1] > start_end["alice-day2"][1]
    png = tmp_path / "multi_tenant_memory.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
