"""Text banks (API.md "Text memories"): the embedder of a bank and the texts of its memories.

A bank whose config names an `embedder` turns texts into vectors itself. The model is loaded
on first use and then shared by every bank (and every thread) of the process that names it
(embed.load_embedder: one load, under a lock); a restart loads it again on first use.

A memory stored as text keeps its text beside it: in the store's `texts` table (same
transaction as the memory: store/texts.py) and in memory as `MemoryBank.texts` (id → text,
changed under the bank's write lock with the rest of the batch). A memory stored as a
vector has no text, also when it replaces one that had. Reads (get, scroll, query matches
with their payload) add `text` for the memories that have one.

The operations that take texts (store, query, energy) are in text_ops.py, above the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import BankConfig
from .embed import Embedder, check_texts, load_embedder
from .errors import DimensionMismatchError, EmptyBatchError, InvalidInputError

if TYPE_CHECKING:
    from .bank import MemoryBank, PreparedBatch
    from .results import QueryBatchResult


class NotATextBankError(InvalidInputError):
    """Text given to a bank without an embedder (HTTP 422, from the family's `status`)."""

    code = "not_a_text_bank"


def embedder_of(config: BankConfig, bank: str = "") -> Embedder:
    """The (shared, lazily loaded) embedder of a text bank; NotATextBankError otherwise."""
    if config.embedder is None:
        raise NotATextBankError(
            f"bank {bank!r} has no embedder: store vectors, or create a text bank with "
            '"embedder": {"model": "all-MiniLM-L6-v2"}',
            {"bank": bank},
        )
    return load_embedder(config.embedder["model"])


def check_embedder(config: BankConfig) -> None:
    """At creation: a text bank's embedder loads here and has the bank's dimension."""
    if config.embedder is None:
        return
    dim = embedder_of(config).dim
    if dim != config.dim:
        raise DimensionMismatchError(
            f"the embedder {config.embedder['model']!r} makes vectors of dimension {dim}, "
            f"the bank has dim {config.dim}",
            {"expected": dim, "got": config.dim},
        )


def text_bank_config(data: dict[str, Any]) -> BankConfig:
    """A BankConfig from a create request (no name). For a text bank `dim` may be left out
    (the model's) and `normalize` defaults to true; the embedder is loaded and checked."""
    data = {k: v for k, v in data.items() if v is not None or k not in ("dim", "normalize")}
    spec = data.get("embedder")
    if spec is not None:
        data.setdefault("normalize", True)
        if "dim" not in data:
            probe = BankConfig(dim=1, embedder=spec)
            probe.validate()  # the spec's shape, before anything is loaded
            data["dim"] = embedder_of(probe).dim
    elif "dim" not in data:
        raise InvalidInputError("dim is required (it may be left out for a text bank only)")
    config = BankConfig.from_dict(data)
    check_embedder(config)
    return config


def check_text_batch(texts: Sequence[str], what: str = "texts") -> list[str]:
    """A non-empty list of texts, each with a non-blank character (a blank text embeds to
    a vector that means nothing, so it is refused rather than stored)."""
    items = check_texts(texts)
    if not items:
        raise EmptyBatchError(f"{what} must not be empty")
    blank = [i for i, t in enumerate(items) if not t.strip()]
    if blank:
        raise InvalidInputError(
            f"a text must not be empty or blank ({what})", {"indexes": blank[:10]}
        )
    return items


def embed(config: BankConfig, texts: Sequence[str], bank: str = "") -> np.ndarray:
    """(n, dim) float32: the texts embedded by the bank's model, in one batched call."""
    embedder = embedder_of(config, bank)
    return embedder.embed(check_text_batch(texts))


# ---- hooks of the write path (engine.py) and the read path (table.py) ---------------------
def batch_texts(
    bank: MemoryBank, batch: PreparedBatch, texts: Sequence[str | None] | None
) -> list[str | None] | None:
    """The text of each unique id of a prepared batch (the last row of an id wins, as its
    vector does); None when the batch changes no text (no text given, none replaced)."""
    if texts is None:
        if not bank.texts or bank.texts.keys().isdisjoint(batch.unique_ids):
            return None
        return [None] * len(batch.unique_ids)
    if len(texts) != len(batch.ids):
        raise InvalidInputError("texts must have one entry per vector")
    if bank.config.embedder is None and any(t is not None for t in texts):
        raise NotATextBankError("this bank has no embedder: it keeps no texts")
    last = {mid: t for mid, t in zip(batch.ids, texts, strict=True)}
    return [last[mid] for mid in batch.unique_ids]


def apply_texts(bank: MemoryBank, ids: Sequence[str], texts: Sequence[str | None] | None) -> None:
    """After the batch is committed and applied (under the bank's write lock)."""
    if texts is None:
        return
    for mid, text in zip(ids, texts, strict=True):
        if text is None:
            bank.texts.pop(mid, None)
        else:
            bank.texts[mid] = text


def attach_texts(bank: MemoryBank, result: QueryBatchResult) -> QueryBatchResult:
    """Matches that carry their payload carry their memory's text too (under the read lock)."""
    if bank.texts:
        for r in result.results:
            for m in r.matches:
                if m.with_payload:
                    m.text = bank.texts.get(m.id)
    return result


__all__ = [
    "NotATextBankError",
    "apply_texts",
    "attach_texts",
    "batch_texts",
    "check_embedder",
    "check_text_batch",
    "embed",
    "embedder_of",
    "text_bank_config",
]
