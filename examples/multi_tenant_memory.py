"""A multi-tenant agent memory in one bank: per-user retrieval by filter, old memories
fading by half-life, one of them reinforced, duplicates refused by `if_novel`
(docs/forgetting.md, docs/api-guide.md).

Three users' memories live in one bank with a `user` keyword index; every query carries a
filter on its user, so a user only ever sees (and competes with) their own memories. The
bank's half-life is one day; the example moves an injectable clock (lam_engine.clock.
ManualClock) over days 4-11, reinforces alice's oldest memory on day 7, stores a new one
on day 9, and plots the weights that the same cue gives alice's memories over time
(between events the ratios stay put: every strength fades at the same rate). A write gated
by `if_novel` stores bob's new memory and refuses a near-copy of one he already has.

    python examples/multi_tenant_memory.py            # writes docs/images/multi_tenant_memory.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples._common import parser  # noqa: E402
from lam_engine import BankConfig, Engine  # noqa: E402
from lam_engine.clock import ManualClock  # noqa: E402

DAY = 86400.0


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rng = np.random.default_rng(7)
    d = 32
    clock = ManualClock()
    engine = Engine.open(None, clock=clock)
    engine.create_bank(
        "agent",
        BankConfig(
            dim=d, beta=6.0, normalize=True, half_life_s=DAY, payload_index={"user": "keyword"}
        ),
    )
    topic = rng.normal(size=d)  # alice's memories are all about one topic, at different days
    ids = []
    for day, user in enumerate(["alice", "bob", "alice", "carol", "alice"]):
        vec = topic + 0.6 * rng.normal(size=d) if user == "alice" else rng.normal(size=d)
        mid = f"{user}-day{day}"
        engine.upsert("agent", [vec], ids=[mid], payloads=[{"user": user, "day": day}])
        ids.append(mid)
        clock.advance(DAY)
    # Novelty-gated write: a near-copy of bob's memory is refused (its energy is low: the
    # bank already holds it), a new memory is stored; `skipped` names the nearest memory.
    bob_old = engine.get_memory("agent", "bob-day1").vector
    near_copy = np.asarray(bob_old) + 0.01 * rng.normal(size=d)
    gated = engine.upsert(
        "agent",
        [near_copy, rng.normal(size=d)],
        ids=["bob-again", "bob-new"],
        payloads=[{"user": "bob"}, {"user": "bob"}],
        if_novel=-0.5,
    )
    assert gated.ids == ["bob-new"] and gated.skipped is not None
    (skip,) = gated.skipped
    assert (skip.id, skip.nearest) == ("bob-again", "bob-day1")
    print(f"if_novel: stored {gated.ids}, skipped {skip.id} (E = {skip.energy:.2f}, nearest")
    print(f"          {skip.nearest}): its energy is below the threshold -0.5")
    alice = [i for i in ids if i.startswith("alice")] + ["alice-day9"]
    cue = [topic]
    only = {"must": [{"key": "user", "match": {"value": "alice"}}]}
    times, weights = [], {i: [] for i in alice}
    for step in range(7 * 8):
        if step == 3 * 8:
            engine.reinforce("agent", ["alice-day0"])  # recalled on day 7: fresh again
        if step == 5 * 8:  # a new memory on the topic: the others fade against it
            vec = topic + 0.6 * rng.normal(size=d)
            engine.upsert("agent", [vec], ids=["alice-day9"], payloads=[{"user": "alice"}])
        res = engine.query("agent", cue, steps=0, top_k=10, filter=only).results[0]
        got = {m.id: m.weight for m in res.matches}
        assert set(got) <= set(alice)  # the filter: only alice's memories compete
        times.append(4 + step / 8)
        for i in alice:
            weights[i].append(got.get(i, 0.0))
        clock.advance(DAY / 8)
    print("weights of alice's memories for the same cue, day 4 → day 11:")
    for i in alice:
        print(f"  {i:12s} {weights[i][0]:.3f} → {weights[i][-1]:.3f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in alice:
        ax.plot(times, weights[i], label=i)
    ax.axvline(7, color="gray", ls=":", label="alice-day0 reinforced")
    ax.set_xlabel("days")
    ax.set_ylabel("weight p_μ (filter: user = alice)")
    ax.set_title("Same cue, days 4-11, half-life 1 day")
    ax.legend()
    fig.tight_layout()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "multi_tenant_memory.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    engine.close()


if __name__ == "__main__":
    main()
