"""LangChain over LAM: `LamVectorStore` (a `VectorStore`) and `LamRetriever` (LAM's extras).

    pip install 'lam[langchain]'

    from lam_client.integrations.langchain import LamVectorStore
    store = LamVectorStore(embeddings, url="http://127.0.0.1:8000", bank="docs")
    # or LamVectorStore(embeddings, path="./lam-data") — embedded, no server
    store.add_texts(["LAM is an associative memory"], metadatas=[{"src": "readme"}])
    store.similarity_search_with_score("what is LAM?", k=1)   # [(Document, cosine)]

Scores: `similarity_search_with_score` gives LAM's match `score` ξ·v at the query, which is
the cosine similarity in the default normalized bank (higher = closer, in [-1, 1]);
`similarity_search_with_relevance_scores` maps it to (1 + cos) / 2 in [0, 1]. The softmax
`weight` (how much of the retrieval that memory carries at the bank's β) and the query's
energy (novelty) are on `LamRetriever`'s documents, under `metadata["lam"]`.

Filters: `filter=` is a dict of equality on metadata (or a predicate on the metadata dict),
applied client-side after fetching more candidates (see `_textbank`): LAM's server-side
filter language has not landed yet. Results are exact; weights and energy stay those of
the whole bank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ..async_client import AsyncClient
from ..client import Client
from ._atextbank import AsyncTextBank
from ._lc_retriever import LamRetriever
from ._sync_textbank import TextBank
from ._textbank import (
    DEFAULT_BETA,
    BankSpec,
    Hit,
    MetadataFilter,
    Recall,
    new_ids,
    to_payload,
)


def _doc(hit: Hit) -> Document:
    return Document(id=hit.id, page_content=hit.text, metadata=dict(hit.metadata))


def _scored(recall: Recall | None) -> list[tuple[Document, float]]:
    return [] if recall is None else [(_doc(h), h.score) for h in recall.hits]


def _mmr(
    query: Sequence[float], recall: Recall | None, k: int, lambda_mult: float
) -> list[Document]:
    if recall is None or not recall.hits:
        return []
    vectors = [np.asarray(h.vector, dtype=np.float32).tolist() for h in recall.hits]
    picked = maximal_marginal_relevance(
        np.asarray(query, dtype=np.float32), vectors, lambda_mult=lambda_mult, k=k
    )
    return [_doc(recall.hits[i]) for i in picked]


class LamEmbeddings(Embeddings):
    """lam_engine.embed's model (default all-MiniLM-L6-v2, bundled, offline) as LangChain
    `Embeddings` (needs 'lam[text]'); `model` may also be a sentence-transformers directory.
    Loaded on first use, once per process."""

    def __init__(self, model: str = "all-MiniLM-L6-v2") -> None:
        self.model = model

    def _embedder(self) -> Any:
        from lam_engine.embed import load_embedder

        return load_embedder(self.model)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._embedder().embed(texts)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class LamVectorStore(VectorStore):
    """A LangChain vector store over one LAM bank (created on the first write, with the
    embedding's dim, `normalize` and `beta`; an existing bank is used as it is).

    Give `client` (a `lam_client.Client`), or `url` (HTTP) or `path` (embedded). Async
    methods use `async_client` when there is one (made from `url` automatically); without
    one (embedded mode) they run the sync methods in an executor thread.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        bank: str = "langchain",
        client: Client | None = None,
        url: str | None = None,
        path: str | None = None,
        api_key: str | None = None,
        async_client: AsyncClient | None = None,
        beta: float = DEFAULT_BETA,
        normalize: bool = True,
        bank_config: dict[str, Any] | None = None,
    ) -> None:
        # Clients made here are closed by close()/aclose(); clients passed in stay the caller's.
        self._owns_client = client is None
        self._owns_async = False
        if client is None:
            client = Client(path=path) if path is not None else Client(url, api_key=api_key)
            if async_client is None and path is None:
                async_client = AsyncClient(url, api_key=api_key)
                self._owns_async = True
        self.embedding = embedding
        self.client = client
        self.async_client = async_client
        spec = BankSpec(bank, beta=beta, normalize=normalize, config=dict(bank_config or {}))
        self._bank = TextBank(client, spec)
        self._abank = AsyncTextBank(async_client, spec) if async_client is not None else None

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def bank(self) -> str:
        return self._bank.name

    # ---- writes --------------------------------------------------------------------------
    def _prepare(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None,
        ids: Sequence[str | None] | None,
    ) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        items = list(texts)
        if metadatas is not None and len(metadatas) != len(items):
            raise ValueError(f"got {len(metadatas)} metadatas for {len(items)} texts")
        metas = metadatas if metadatas is not None else [{}] * len(items)
        payloads = [to_payload(t, m) for t, m in zip(items, metas, strict=True)]
        return items, new_ids(ids, len(items)), payloads

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed with `self.embedding` and upsert; an id already there is replaced."""
        items, uids, payloads = self._prepare(texts, metadatas, ids or kwargs.get("ids"))
        if not items:
            return []
        vectors = self.embedding.embed_documents(items)
        return self._bank.add(vectors, uids, payloads)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        if self._abank is None:
            return await run_in_executor(None, self.add_texts, texts, metadatas, ids=ids)
        items, uids, payloads = self._prepare(texts, metadatas, ids or kwargs.get("ids"))
        if not items:
            return []
        vectors = await self.embedding.aembed_documents(items)
        return await self._abank.add(vectors, uids, payloads)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by id (unknown ids are ignored); `ids=None` empties the bank."""
        self._bank.delete(ids)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if self._abank is None:
            return await run_in_executor(None, self.delete, ids)
        await self._abank.delete(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in that order; missing ids are left out."""
        return [_doc(h) for h in self._bank.get_many(ids)]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        if self._abank is None:
            return await run_in_executor(None, self.get_by_ids, ids)
        return [_doc(h) for h in await self._abank.get_many(ids)]

    # ---- search --------------------------------------------------------------------------
    def similarity_search(
        self, query: str, k: int = 4, filter: MetadataFilter | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: MetadataFilter | None = None, **kwargs: Any
    ) -> list[Document]:
        pairs = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [d for d, _ in pairs]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: MetadataFilter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, ξ·v at the query) pairs, best first; ξ·v is the cosine similarity
        when the bank normalizes (the default)."""
        vector = self.embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: MetadataFilter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        if self._abank is None:
            return await run_in_executor(None, self.similarity_search_with_score, query, k, filter)
        vector = await self.embedding.aembed_query(query)
        return _scored(await self._abank.search(vector, k, filter))

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: MetadataFilter | None = None
    ) -> list[tuple[Document, float]]:
        return _scored(self._bank.search(embedding, k, filter))

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: MetadataFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter)]

    async def asimilarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: MetadataFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        if self._abank is None:
            return await run_in_executor(
                None, self.similarity_search_by_vector, embedding, k, filter
            )
        return [d for d, _ in _scored(await self._abank.search(embedding, k, filter))]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self._bank.spec.normalize:
            return lambda cos: min(1.0, max(0.0, (1.0 + cos) / 2.0))
        # A raw dot product has no fixed range: the logistic map keeps the order in (0, 1).
        return lambda dot: 1.0 / (1.0 + math.exp(-dot))

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self.embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter=filter
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR among the `fetch_k` best matches at the cue (LangChain's own MMR formula)."""
        recall = self._bank.search(embedding, max(fetch_k, k), filter, with_vectors=True)
        return _mmr(embedding, recall, k, lambda_mult)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        if self._abank is None:
            return await run_in_executor(
                None,
                self.max_marginal_relevance_search,
                query,
                k,
                fetch_k,
                lambda_mult,
                filter,
            )
        vector = await self.embedding.aembed_query(query)
        recall = await self._abank.search(vector, max(fetch_k, k), filter, with_vectors=True)
        return _mmr(vector, recall, k, lambda_mult)

    # ---- LAM's extras ----------------------------------------------------------------------
    def recall(
        self,
        query: str,
        k: int = 4,
        *,
        steps: int = 0,
        beta: float | None = None,
        filter: MetadataFilter | None = None,
    ) -> Recall | None:
        """Hits with weights, the query's energy (novelty) and state. `steps=0` scores at the
        query; `steps ≥ 1` first completes it by that many Model B updates (pattern
        completion) and reports the matches at the completed state (no filter then)."""
        vector = self.embedding.embed_query(query)
        if steps == 0:
            return self._bank.search(vector, k, filter)
        if filter is not None:
            raise ValueError("filter applies to scoring at the cue (steps=0) only")
        return self._bank.complete(vector, k, steps, beta)

    def novelty(self, query: str) -> float | None:
        """The energy of the query under the bank: high = unlike anything stored."""
        return self._bank.energy(self.embedding.embed_query(query))

    def as_lam_retriever(self, **kwargs: Any) -> LamRetriever:
        return LamRetriever(vectorstore=self, **kwargs)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> LamVectorStore:
        """A store (kwargs as for the constructor: bank, url/path/client, beta…) holding
        these texts."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        """Close the sync client if this store made it (see aclose for the async one)."""
        if self._owns_client:
            self.client.close()

    async def aclose(self) -> None:
        """Close every client this store made."""
        if self._owns_async and self.async_client is not None:
            await self.async_client.close()
        self.close()


__all__ = ["LamEmbeddings", "LamRetriever", "LamVectorStore"]
