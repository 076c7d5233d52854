"""LamVectorStore: LangChain's own standard suite (live server and embedded), then LAM's
extras: scores, relevance, MMR, client-side filters, the retriever."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from lam_client import Client
from lam_client.errors import NotFound
from lam_client.integrations.langchain import LamEmbeddings, LamRetriever, LamVectorStore
from lam_engine.embed import Embedder


def drop(client: Client, bank: str) -> None:
    with contextlib.suppress(NotFound):  # a test that only read never created it
        client.delete_bank(bank)


class TestLamHttpStandard(VectorStoreIntegrationTests):
    """The standard suite over HTTP: sync methods on Client, async ones on AsyncClient."""

    @pytest.fixture()
    def vectorstore(self, lam_url: str, bank_name: str) -> Iterator[VectorStore]:
        store = LamVectorStore(self.get_embeddings(), url=lam_url, bank=bank_name)
        assert store.async_client is not None
        try:
            yield store
        finally:
            drop(store.client, bank_name)
            store.close()


class TestLamEmbeddedStandard(VectorStoreIntegrationTests):
    """The standard suite in embedded mode (Client(path=...)), async in executor threads."""

    @pytest.fixture()
    def vectorstore(self, embedded_client: Client, bank_name: str) -> Iterator[VectorStore]:
        store = LamVectorStore(self.get_embeddings(), client=embedded_client, bank=bank_name)
        try:
            yield store
        finally:
            drop(embedded_client, bank_name)


# ---- LAM's extras ------------------------------------------------------------------------
FRUIT = ["apple pie", "banana bread", "cherry tart", "plum jam", "fig roll", "kiwi salad"]


@pytest.fixture(params=["http", "embedded"])
def store(
    request: pytest.FixtureRequest, bank_name: str, lam_url: str, embedded_client: Client
) -> Iterator[LamVectorStore]:
    emb = DeterministicFakeEmbedding(size=16)
    if request.param == "http":
        s = LamVectorStore(emb, url=lam_url, bank=bank_name)
    else:
        s = LamVectorStore(emb, client=embedded_client, bank=bank_name)
    try:
        yield s
    finally:
        drop(s.client, bank_name)
        if request.param == "http":
            s.close()


def _cosines(emb: DeterministicFakeEmbedding, query: str, texts: list[str]) -> np.ndarray:
    q = np.asarray(emb.embed_query(query))
    m = np.asarray(emb.embed_documents(texts))
    return (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))


def test_scores_are_cosines_at_the_query_in_order(store: LamVectorStore) -> None:
    metas = [{"i": i, "even": i % 2 == 0} for i in range(len(FRUIT))]
    store.add_texts(FRUIT, metas, ids=[f"f{i}" for i in range(len(FRUIT))])
    pairs = store.similarity_search_with_score("plum jam", k=len(FRUIT))
    want = _cosines(store.embedding, "plum jam", FRUIT)  # type: ignore[arg-type]
    order = np.argsort(-want)
    assert [d.page_content for d, _ in pairs] == [FRUIT[i] for i in order]
    np.testing.assert_allclose([s for _, s in pairs], want[order], atol=1e-5)
    rel = store.similarity_search_with_relevance_scores("plum jam", k=2)
    assert rel[0][0].page_content == "plum jam" and rel[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= r <= 1.0 for _, r in rel)


def test_filter_is_metadata_equality_and_exact(store: LamVectorStore) -> None:
    metas = [{"i": i, "even": i % 2 == 0, "tags": ["x", str(i)]} for i in range(len(FRUIT))]
    store.add_texts(FRUIT, metas)
    docs = store.similarity_search("plum jam", k=10, filter={"even": True})
    assert sorted(d.metadata["i"] for d in docs) == [0, 2, 4]
    assert [d.metadata["i"] for d in store.similarity_search("x", k=3, filter={"tags": "5"})] == [5]
    assert store.similarity_search("x", k=3, filter={"even": "nope"}) == []
    odd = store.similarity_search("x", k=10, filter=lambda m: m["i"] % 2 == 1)
    assert sorted(d.metadata["i"] for d in odd) == [1, 3, 5]


def test_mmr_returns_k_distinct_with_the_best_first(store: LamVectorStore) -> None:
    store.add_texts(FRUIT)
    docs = store.max_marginal_relevance_search("cherry tart", k=3, fetch_k=6)
    assert len(docs) == 3 and docs[0].page_content == "cherry tart"
    assert len({d.page_content for d in docs}) == 3


def test_retriever_exposes_weight_energy_and_completion(store: LamVectorStore) -> None:
    store.add_texts(FRUIT, ids=[f"f{i}" for i in range(len(FRUIT))])
    docs = LamRetriever(vectorstore=store, k=3).invoke("fig roll")
    lam = docs[0].metadata["lam"]
    assert docs[0].page_content == "fig roll" and lam["id"] == "f4"
    assert lam["score"] == pytest.approx(1.0, abs=1e-5) and lam["steps"] == 0
    weights = [d.metadata["lam"]["weight"] for d in docs]
    assert weights == sorted(weights, reverse=True) and 0 < weights[0] <= 1
    # The query's energy is its novelty: a stored text is more familiar than an unseen one.
    assert lam["energy"] < store.recall("something never stored", 1).energy  # type: ignore[union-attr]
    assert store.novelty("fig roll") == pytest.approx(lam["energy"], abs=1e-4)
    # Completion: Model B steps from the cue land on the stored pattern.
    done = store.as_lam_retriever(k=1, steps=5, beta=50.0).invoke("fig roll")
    assert done[0].metadata["lam"]["id"] == "f4" and done[0].metadata["lam"]["steps"] >= 1
    rec = store.recall("fig roll", 1, steps=5, beta=50.0)
    assert rec is not None and rec.state.shape == (16,)


def test_from_texts_delete_all_and_an_untouched_store(
    bank_name: str, embedded_client: Client
) -> None:
    emb = DeterministicFakeEmbedding(size=8)
    empty = LamVectorStore(emb, client=embedded_client, bank=bank_name)
    assert empty.similarity_search("x") == [] and empty.get_by_ids(["a"]) == []
    assert empty.novelty("x") is None and empty.delete(["a"])
    s = LamVectorStore.from_texts(
        ["a", "b", "c"],
        emb,
        [{"n": 1}, {"n": 2}, {"n": 3}],
        client=embedded_client,
        bank=bank_name,
        ids=["1", "2", "2"],  # the same id twice: the last one wins
    )
    assert [d.page_content for d in s.get_by_ids(["1", "2"])] == ["a", "c"]
    assert embedded_client.get_bank(bank_name).normalize
    s.delete()
    assert s.similarity_search("a") == []
    drop(embedded_client, bank_name)


async def test_async_search_matches_sync(lam_url: str, bank_name: str) -> None:
    store = LamVectorStore(DeterministicFakeEmbedding(size=16), url=lam_url, bank=bank_name)
    try:
        await store.aadd_documents([Document(page_content=t, metadata={"t": t}) for t in FRUIT])
        sync = store.similarity_search_with_score("kiwi salad", k=3)
        got = await store.asimilarity_search_with_score("kiwi salad", k=3)
        assert [d.page_content for d, _ in got] == [d.page_content for d, _ in sync]
        mmr = await store.amax_marginal_relevance_search("kiwi salad", k=2, fetch_k=6)
        assert mmr[0].page_content == "kiwi salad"
        docs = await store.as_lam_retriever(k=2).ainvoke("kiwi salad")
        assert docs[0].metadata["t"] == "kiwi salad"
    finally:
        drop(store.client, bank_name)
        store.close()


def test_minilm_embeddings_rank_a_paraphrase(
    minilm: Embedder, bank_name: str, embedded_client: Client
) -> None:
    emb = LamEmbeddings()
    assert len(emb.embed_query("hello")) == minilm.dim
    s = LamVectorStore(emb, client=embedded_client, bank=bank_name)
    s.add_texts(["The cat is sleeping on the sofa.", "The stock market fell sharply."])
    assert s.similarity_search("Share prices dropped.", k=1)[0].page_content.startswith("The st")
    drop(embedded_client, bank_name)
