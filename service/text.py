"""Text banks over HTTP (API.md "Text memories"): memories with `text`, queries with `texts`.

The routes stay thin: a body that carries texts is recognised here, and the embedding (the
bank's model, batched) runs in the caller's worker thread (lam_engine.text_ops), never on the
event loop. Rules checked at the boundary:

* a memory has exactly one of `vector` and `text` (both or neither: 422); a batch may mix
  the two forms; text in a bank without an embedder is 422 `not_a_text_bank`;
* a query or energy request has exactly one of `queries`/`states` and `texts`; `texts` on a
  bank without an embedder is 422 `not_a_text_bank`; a `mask` does not apply to texts (422);
* a text must not be empty or blank (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lam_engine import Engine
from lam_engine.inputs import QueryInput
from lam_engine.results import UpsertResult
from lam_engine.text_ops import embed_queries, store_texts

from .errors import ApiError, validation_error

# The JSON Schema of a form with texts, for the OpenAPI document.
TEXT_SCHEMA = {"type": "string", "minLength": 1, "pattern": r"\S"}
TEXTS_SCHEMA = {"type": "array", "items": TEXT_SCHEMA, "minItems": 1}


def has_text(memories: Any) -> bool:
    return isinstance(memories, list) and any(isinstance(m, dict) and "text" in m for m in memories)


def store_text_memories(
    engine: Engine,
    bank: str,
    memories: list[dict[str, Any]],
    problem: Any,
    if_novel: float | None = None,
    forgetting: dict[str, list[Any]] | None = None,
) -> UpsertResult:
    """A store batch with texts (worker thread); `problem(m)` is the route's check of a memory
    (ids, payloads, keys), applied to every memory as for a vector batch."""
    texts: list[str | None] = []
    vectors: list[Any] = []
    for i, m in enumerate(memories):
        found = problem(m)
        if found is None and "text" in m and "vector" in m:
            found = ("text", "give text or vector, not both")
        if found is None and "text" in m and not isinstance(m["text"], str):
            found = ("text", "text must be a string")
        if found is not None:
            loc = ["body", "memories", str(i), found[0]]
            raise validation_error([{"loc": loc, "msg": found[1], "type": "invalid"}])
        texts.append(m.get("text"))
        vectors.append(m.get("vector"))
    ids = [m.get("id") for m in memories]
    payloads = [m.get("payload") for m in memories]
    return store_texts(
        engine, bank, texts,
        ids if any(i is not None for i in ids) else None,
        payloads if any(p is not None for p in payloads) else None,
        vectors=vectors,
        if_novel=if_novel,
        forgetting=forgetting,
    )  # fmt: skip


def one_form(req: Any, vectors_field: str) -> None:
    """Exactly one of `vectors_field` (queries, states) and `texts` (API.md: one form)."""
    given = [f for f in (vectors_field, "texts") if getattr(req, f) is not None]
    if not given:
        loc = ["body", vectors_field]
        raise validation_error(
            [{"loc": loc, "msg": "Field required (or texts)", "type": "missing"}]
        )
    if len(given) != 1:
        raise ApiError(
            422, "invalid_parameter", f"give exactly one of {vectors_field} and texts",
            {"given": given},
        )  # fmt: skip
    if given == ["texts"] and getattr(req, "mask", None) is not None:
        raise ApiError(422, "invalid_parameter", "a mask applies to vector queries, not to texts")


@dataclass
class TextQuery:
    """A query with texts, validated but for the embedding, which needs the bank's model (in
    a worker thread: `embedded`)."""

    texts: list[str]
    params: dict[str, Any]

    def embedded(self, engine: Engine, bank: str) -> QueryInput:
        queries = embed_queries(engine, bank, self.texts)
        return QueryInput.build(queries, **self.params)


__all__ = [
    "TEXTS_SCHEMA",
    "TEXT_SCHEMA",
    "TextQuery",
    "has_text",
    "one_form",
    "store_text_memories",
]
