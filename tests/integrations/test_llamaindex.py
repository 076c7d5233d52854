"""LamLlamaVectorStore end to end: a VectorStoreIndex built from Documents with the bundled
MiniLM (LamEmbedding), queried, filtered and deleted from, over HTTP and embedded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from lam_client import Client
from lam_client.errors import NotFound
from lam_client.integrations.llamaindex import LamEmbedding, LamLlamaVectorStore, matches_filters
from lam_engine.embed import Embedder

DOCS = [
    ("The cat is sleeping on the sofa.", {"topic": "pets", "year": 2021}),
    ("The stock market fell sharply this morning.", {"topic": "finance", "year": 2022}),
    ("Our flight to Tokyo was delayed by three hours.", {"topic": "travel", "year": 2023}),
    ("He planted tomatoes in the garden.", {"topic": "garden", "year": 2024}),
    ("We adopted a puppy from the shelter.", {"topic": "pets", "year": 2025}),
]


@pytest.fixture(params=["http", "embedded"])
def store(
    request: pytest.FixtureRequest, bank_name: str, lam_url: str, embedded_client: Client
) -> Iterator[LamLlamaVectorStore]:
    client = Client(lam_url) if request.param == "http" else embedded_client
    s = LamLlamaVectorStore(bank_name, client=client)
    try:
        yield s
    finally:
        with contextlib.suppress(NotFound):
            client.delete_bank(bank_name)
        if request.param == "http":
            client.close()


@pytest.fixture
def index(store: LamLlamaVectorStore, minilm: Embedder) -> VectorStoreIndex:
    docs = [Document(text=t, metadata=m, doc_id=f"doc{i}") for i, (t, m) in enumerate(DOCS)]
    return VectorStoreIndex.from_documents(
        docs,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LamEmbedding(),
    )


def test_index_answers_a_query_from_lam(index: VectorStoreIndex) -> None:
    got = index.as_retriever(similarity_top_k=2).retrieve("Share prices dropped today.")
    assert got[0].node.get_content() == DOCS[1][0]
    assert got[0].node.metadata == DOCS[1][1] and got[0].node.ref_doc_id == "doc1"
    assert got[0].score is not None and got[0].score > (got[1].score or 0.0)
    answer = index.as_query_engine(llm=MockLLM(), similarity_top_k=1).query(
        "Which flight was late?"
    )
    assert answer.source_nodes[0].node.get_content() == DOCS[2][0]


def test_metadata_filters_and_doc_ids(index: VectorStoreIndex, store: LamLlamaVectorStore) -> None:
    pets = MetadataFilters(filters=[MetadataFilter(key="topic", value="pets")])
    got = index.as_retriever(similarity_top_k=5, filters=pets).retrieve("an animal at home")
    assert sorted(n.node.get_content() for n in got) == sorted([DOCS[0][0], DOCS[4][0]])
    recent = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=2023, operator=FilterOperator.GTE),
            MetadataFilter(key="topic", value=["garden", "travel"], operator=FilterOperator.IN),
        ]
    )
    got = index.as_retriever(similarity_top_k=5, filters=recent).retrieve("anything")
    assert {n.node.ref_doc_id for n in got} == {"doc2", "doc3"}
    q = VectorStoreQuery(
        query_embedding=LamEmbedding().get_query_embedding("cats"),
        similarity_top_k=3,
        doc_ids=["doc3"],
    )
    res = store.query(q)
    assert res.ids is not None and len(res.ids) == 1 and res.nodes is not None
    assert res.nodes[0].ref_doc_id == "doc3"


def test_delete_by_document_nodes_and_clear(
    index: VectorStoreIndex, store: LamLlamaVectorStore
) -> None:
    index.delete_ref_doc("doc0")
    got = index.as_retriever(similarity_top_k=5).retrieve("The cat is sleeping on the sofa.")
    assert DOCS[0][0] not in [n.node.get_content() for n in got] and len(got) == 4
    nodes = store.get_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="pets")])
    )
    assert [n.get_content() for n in nodes] == [DOCS[4][0]]
    store.delete_nodes([nodes[0].node_id])
    assert store.get_nodes([nodes[0].node_id]) == []
    store.clear()
    assert index.as_retriever(similarity_top_k=3).retrieve("anything") == []


def test_filter_semantics() -> None:
    meta = {"a": 1, "tags": ["x", "y"], "s": "Hello World"}

    def f(key: str, value: object, op: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
        return MetadataFilter(key=key, value=value, operator=op)  # type: ignore[arg-type]

    def holds(*fs: MetadataFilter, cond: FilterCondition = FilterCondition.AND) -> bool:
        return matches_filters(MetadataFilters(filters=list(fs), condition=cond), meta)

    assert holds(f("a", 1)) and not holds(f("a", 2)) and holds(f("a", 2, FilterOperator.NE))
    assert holds(f("a", 0, FilterOperator.GT)) and not holds(f("a", 1, FilterOperator.LT))
    assert holds(f("tags", "x")) and holds(f("tags", "y", FilterOperator.CONTAINS))
    assert holds(f("tags", ["y", "z"], FilterOperator.ANY))
    assert not holds(f("tags", ["y", "z"], FilterOperator.ALL))
    assert holds(f("a", [1, 2], FilterOperator.IN)) and holds(f("a", [3], FilterOperator.NIN))
    assert holds(f("s", "world", FilterOperator.TEXT_MATCH_INSENSITIVE))
    assert not holds(f("s", "world", FilterOperator.TEXT_MATCH))
    assert holds(f("missing", "", FilterOperator.IS_EMPTY)) and not holds(f("missing", 1))
    assert not holds(f("s", 3, FilterOperator.GT))  # str vs int: does not hold, no error
    assert holds(f("a", 2), f("a", 1), cond=FilterCondition.OR)
    assert holds(f("a", 2), cond=FilterCondition.NOT)
