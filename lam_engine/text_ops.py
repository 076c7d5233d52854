"""The operations of a text bank that take texts: store, query, energy (API.md "Text memories").

Each embeds its texts with the bank's model (texts.embed: one batched call, outside every
bank lock) and then goes through the engine's ordinary path, so a text memory is stored,
content-addressed (SHA-256 of the vector as stored), made durable and retrieved exactly as
a vector memory is. The service calls these in its worker threads, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .engine import Engine
from .errors import InvalidInputError, InvalidParameterError
from .results import EnergyResult, QueryBatchResult, UpsertResult
from .texts import check_text_batch, embed, embedder_of
from .vectors import as_matrix


def store_texts(
    engine: Engine,
    name: str,
    texts: Sequence[str | None],
    ids: Sequence[str | None] | None = None,
    payloads: Sequence[dict[str, Any] | None] | None = None,
    *,
    vectors: Sequence[Any] | None = None,
    if_novel: float | None = None,
    forgetting: dict[str, Any] | None = None,
) -> UpsertResult:
    """Upsert memories given as texts; an entry None in `texts` is the vector `vectors[i]`
    instead (a batch may mix both forms)."""
    config = engine.bank_info(name).config
    rows = list(texts) if not isinstance(texts, str) else check_text_batch(texts)
    given = [i for i, t in enumerate(rows) if t is not None]
    if len(given) == len(rows):
        vectors_of_texts = embed(config, rows, name)  # type: ignore[arg-type]
        return engine.upsert(
            name, vectors_of_texts, ids, payloads, texts=rows, if_novel=if_novel,
            **(forgetting or {}),
        )  # fmt: skip
    if vectors is None or len(vectors) != len(rows):
        raise InvalidInputError("a memory without text needs its vector")
    embedder = embedder_of(config, name)
    matrix = np.empty((len(rows), embedder.dim), dtype=np.float32)  # (n, d)
    others = [i for i, t in enumerate(rows) if t is None]
    matrix[others] = _rows(vectors, others, embedder.dim)
    if given:
        matrix[given] = embed(config, [rows[i] for i in given], name)  # type: ignore[misc]
    return engine.upsert(
        name, matrix, ids, payloads, texts=rows, if_novel=if_novel, **(forgetting or {})
    )


def _rows(vectors: Sequence[Any], which: list[int], dim: int) -> np.ndarray:
    return as_matrix([vectors[i] for i in which], dim, "vectors")


def embed_queries(engine: Engine, name: str, texts: Sequence[str]) -> np.ndarray:
    """(B, d) float32: query texts embedded by the bank's model."""
    return embed(engine.bank_info(name).config, texts, name)


def query_texts(engine: Engine, name: str, texts: Sequence[str], **params: Any) -> QueryBatchResult:
    """`Engine.query` with texts as the cues (parameters as there; a mask does not apply)."""
    if params.get("mask") is not None:
        raise InvalidParameterError("a mask applies to vector queries, not to texts")
    params.pop("mask", None)
    return engine.query(name, embed_queries(engine, name, texts), **params)


def energy_texts(engine: Engine, name: str, texts: Sequence[str], **params: Any) -> EnergyResult:
    """`Engine.energy` of the texts' embeddings (parameters as there)."""
    return engine.energy(name, embed_queries(engine, name, texts), **params)


__all__ = ["embed_queries", "energy_texts", "query_texts", "store_texts"]
