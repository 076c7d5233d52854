"""Pattern completion on scikit-learn's bundled 8×8 digits (no download).

Every digit is stored as a memory; a cue is a stored digit with 30 % or 50 % of its pixels
hidden through the query `mask` (unknown pixels are ignored by the first step and completed
from Ξᵀ softmax(β Ξ v); known pixels stay clamped). Recall = the top match is the original.

Memories are centered (the mean digit subtracted) and the bank normalizes (cosine geometry):
raw pixels are all ≥ 0, so every pair of digits overlaps strongly (the mean image dominates)
and the separation Δ is small; centering removes the shared part, and normalizing removes the
dot product's bias towards digits with more ink.

    python examples/digits_completion.py            # full: 1797 memories, 300 cues per level
    python examples/digits_completion.py --quick     # CI smoke run
"""

from __future__ import annotations

import json

import numpy as np
from _common import fresh_bank, open_client, parser

BETAS = (1.0, 10.0, 50.0)


def completion_image(
    state: np.ndarray, cue: np.ndarray, mask: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """Pixels from a completed state (normalized, centered units): known pixels from the cue;
    unknown ones rescaled so that the completion's known part has the cue's norm."""
    completed = state.copy()
    denom = float(np.linalg.norm(completed[mask]))
    scale = float(np.linalg.norm(cue[mask])) / denom if denom > 0 else 1.0
    out = mean + completed * scale
    out[mask] = mean[mask] + cue[mask]
    return np.clip(out, 0, 16)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float32)  # (1797, 64), pixel values 0..16
    n_mem, n_cues = (400, 40) if args.quick else (len(x), 300)
    levels = (0.3, 0.5) if args.quick else (0.1, 0.3, 0.5, 0.7)
    x = x[:n_mem]
    mean = x.mean(axis=0)  # (64,)
    xc = x - mean  # (N, 64) centered
    rng = np.random.default_rng(0)
    cue_ids = rng.choice(n_mem, n_cues, replace=False)

    client = open_client(args)
    recall: dict[str, dict[str, float]] = {}
    pixel_err: dict[str, dict[str, float]] = {}
    shown: dict[float, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for beta in BETAS:
        bank = fresh_bank(client, f"digits-b{int(beta)}", 64, beta=beta, normalize=True)
        client.upload(bank, xc, ids=[str(i) for i in range(n_mem)], batch_size=1000, progress=False)
        recall[str(beta)], pixel_err[str(beta)] = {}, {}
        for frac in levels:
            mask = (
                np.random.default_rng(int(frac * 100)).random((n_cues, 64)) >= frac
            )  # True = known
            cues = xc[cue_ids]
            res = client.query(bank, cues, mask=mask, steps=args.steps, top_k=1)
            hits = [int(r.matches[0].id) == i for r, i in zip(res, cue_ids, strict=True)]
            recall[str(beta)][str(frac)] = float(np.mean(hits))
            images = [
                completion_image(r.state, c, m, mean)
                for r, c, m in zip(res, cues, mask, strict=True)
            ]
            err = [
                np.abs(img - x[i])[~m].mean()
                for img, i, m in zip(images, cue_ids, mask, strict=True)
            ]
            pixel_err[str(beta)][str(frac)] = float(np.mean(err))
            if beta == BETAS[-1] and frac in (0.3, 0.5):
                shown[frac] = [
                    (np.where(mask[k], x[cue_ids[k]], np.nan), images[k], x[cue_ids[k]])
                    for k in range(6)
                ]

    print(f"memories: {n_mem}, cues per level: {n_cues}, steps: {args.steps}")
    print("recall (top match is the original digit)     mean |error| of completed pixels (0..16)")
    print(
        "beta   "
        + "  ".join(f"{int(f * 100):>3d}%" for f in levels)
        + "      "
        + "  ".join(f"{int(f * 100):>4d}%" for f in levels)
    )
    for beta in BETAS:
        r = "  ".join(f"{recall[str(beta)][str(f)]:.2f}" for f in levels)
        e = "  ".join(f"{pixel_err[str(beta)][str(f)]:5.2f}" for f in levels)
        print(f"{beta:<6g} {r}      {e}")

    fig = plt.figure(figsize=(11, 6.2))
    grid = fig.add_gridspec(6, 7, width_ratios=[1] * 6 + [0.2], wspace=0.15, hspace=0.35)
    for block, frac in enumerate((0.3, 0.5)):
        for row, label in enumerate(("cue", "retrieved", "original")):
            for col, triple in enumerate(shown[frac]):
                ax = fig.add_subplot(grid[block * 3 + row, col])
                cmap = plt.get_cmap("gray_r").copy()
                cmap.set_bad("#f4b6b6")  # hidden pixels in pink
                ax.imshow(triple[row].reshape(8, 8), cmap=cmap, vmin=0, vmax=16)
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(
                        f"{label}\n{int(frac * 100)}% hidden" if row == 0 else label, fontsize=8
                    )
    fig.suptitle(f"Completion of masked digits, Model B, β = {BETAS[-1]:g}, {args.steps} steps")
    fig.savefig(args.out_dir / "digits_completion.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for beta in BETAS:
        ax[0].plot(
            [100 * f for f in levels],
            [recall[str(beta)][str(f)] for f in levels],
            "o-",
            label=f"β = {beta:g}",
        )
        ax[1].plot(
            [100 * f for f in levels],
            [pixel_err[str(beta)][str(f)] for f in levels],
            "o-",
            label=f"β = {beta:g}",
        )
    ax[0].set(xlabel="hidden pixels (%)", ylabel="recall (top-1 = original)", ylim=(0, 1.02))
    ax[1].set(xlabel="hidden pixels (%)", ylabel="mean |error| of completed pixels")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(f"{n_mem} stored digits, {n_cues} cues per level")
    fig.tight_layout()
    fig.savefig(args.out_dir / "digits_recall.png", dpi=110)
    plt.close(fig)
    (args.out_dir / "digits_recall.json").write_text(
        json.dumps(
            {
                "memories": n_mem,
                "cues": n_cues,
                "steps": args.steps,
                "recall": recall,
                "pixel_error": pixel_err,
            },
            indent=1,
        )
    )
    client.close()


if __name__ == "__main__":
    main()
