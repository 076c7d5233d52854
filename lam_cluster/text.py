"""Text banks on a cluster (API.md "Text memories"): the router embeds, the replicas keep.

The router is the one process that loads a text bank's model (`texts.check_embedder` at
creation; `lam_engine.text_ops` embeds store batches and query texts with it, outside every
lock, as on one bank — those functions take the `ClusterEngine` as their engine). A store
batch reaches the replicas as vectors plus the text of each unique id; each replica keeps
its memories' texts in its own store (its bank is created with `load_embedder=False`, so no
model is loaded on the nodes) and sends the texts of its top-k with its partials, so
matches, get and scroll carry `text` as on one bank.
"""

from __future__ import annotations

from collections.abc import Sequence

from lam_engine.bank import MemoryBank, PreparedBatch
from lam_engine.texts import batch_texts


def routed_texts(
    prep: MemoryBank, batch: PreparedBatch, texts: Sequence[str | None] | None
) -> list[str | None] | None:
    """The text of each unique id of `batch` (the last row of an id wins), validated as one
    bank validates them (one per row; texts only on a text bank); None: no text given (a
    replica then drops the texts of the ids the batch replaces, as one bank does)."""
    if texts is None:
        return None
    return batch_texts(prep, batch, texts)
