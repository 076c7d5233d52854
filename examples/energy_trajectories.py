"""Energy along the two-layer network's dynamics (POST /dynamics) for Models A, B and C.

The same memories (random ±1 patterns) are stored in three banks, one per model of
Krotov & Hopfield (2020); from a corrupted memory the feature neurons v and the hidden
neurons h are integrated (τ_f dv/dt = Ξᵀf − v, τ_h dh/dt = Ξg − h) and the full two-layer
energy is recorded. It never increases; the plot shows it for several cues per model.

    python examples/energy_trajectories.py [--quick]
"""

from __future__ import annotations

import numpy as np
from _common import fresh_bank, open_client, parser

MODELS = {
    "A": {"model": "A", "beta": 1.0, "model_params": {"F": "rectified_power", "power": 3}},
    "B": {"model": "B", "beta": 16.0},
    "C": {"model": "C", "beta": 1.0, "model_params": {"F": "rectified_power", "power": 3}},
}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, n, n_cues = (32, 8, 2) if args.quick else (64, 16, 4)
    t_max = 2.0 if args.quick else 5.0
    rng = np.random.default_rng(1)
    xi = rng.choice([-1.0, 1.0], size=(n, d)) / np.sqrt(d)  # (N, d), unit-norm memories
    flips = rng.random((n_cues, d)) < 0.2
    cues = np.where(flips, -xi[:n_cues], xi[:n_cues])  # (n_cues, d): 20 % of signs flipped

    client = open_client(args)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    print(
        f"{'model':<6}{'cue':>4}{'E(0)':>11}{'E(end)':>11}{'steps':>7}"
        f"{'converged':>11}{'top hidden':>12}"
    )
    for ax, (label, config) in zip(axes, MODELS.items(), strict=True):
        bank = fresh_bank(client, f"traj-{label.lower()}", d, **config)
        client.store(bank, xi, ids=[f"xi{i}" for i in range(n)])
        for k, cue in enumerate(cues):
            res = client.dynamics(bank, cue, t_max=t_max, dt=0.01, record_every=5, top_k=1)
            assert (np.diff(res.energy) <= 1e-6 * max(1.0, abs(res.energy[0]))).all()
            ax.plot(res.times, res.energy, label=f"cue {k} (from ξ{k})")
            top = res.hidden_top[0].id if res.hidden_top else "-"
            print(
                f"{label:<6}{k:>4}{res.energy[0]:>11.4f}{res.energy[-1]:>11.4f}"
                f"{res.steps or 0:>7}{res.converged!s:>11}{top:>12}"
            )
        ax.set(
            title=f"Model {label}", xlabel="time t (units of τ_f)", ylabel="two-layer energy E(t)"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Energy along the dynamics: {n} memories, d = {d}, 20 % of the cue's signs flipped"
    )
    fig.tight_layout()
    fig.savefig(args.out_dir / "energy_trajectories.png", dpi=110)
    plt.close(fig)
    client.close()


if __name__ == "__main__":
    main()
