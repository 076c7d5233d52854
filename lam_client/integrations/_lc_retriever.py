"""`LamRetriever`: LangChain documents with LAM's extras (weights, energy, completion)."""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict

from ._textbank import Recall


class LamRetriever(BaseRetriever):
    """Documents with LAM's extras in `metadata["lam"]`: `id`, `score` (ξ·v), `weight`
    (softmax share at β), `energy` of the query (novelty: high = unfamiliar), `steps`.

    `steps=0` (default) ranks by similarity at the query; `steps ≥ 1` ranks by the memory
    the query completes to (associative recall: a partial or noisy cue lands on the stored
    pattern it is nearest in energy). `min_weight` drops matches carrying less weight.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(arbitrary_types_allowed=True)

    # A LamVectorStore; typed loosely because that module imports this one.
    vectorstore: Any
    k: int = 4
    steps: int = 0
    beta: float | None = None
    min_weight: float = 0.0
    filter: Any = None  # MetadataFilter

    def _documents(self, recall: Recall | None) -> list[Document]:
        if recall is None:
            return []
        docs = []
        for h in recall.hits:
            if h.weight < self.min_weight:
                continue
            extras = {
                "id": h.id,
                "score": h.score,
                "weight": h.weight,
                "energy": recall.energy,
                "steps": recall.steps,
            }
            docs.append(
                Document(id=h.id, page_content=h.text, metadata={**h.metadata, "lam": extras})
            )
        return docs

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        recall = self.vectorstore.recall(
            query, self.k, steps=self.steps, beta=self.beta, filter=self.filter
        )
        return self._documents(recall)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        recall = await run_in_executor(
            None,
            lambda: self.vectorstore.recall(
                query, self.k, steps=self.steps, beta=self.beta, filter=self.filter
            ),
        )
        return self._documents(recall)
