"""Which shard owns a memory: a stable hash of its id (content ids too), modulo K.

Stable across processes, machines and versions (SHA-256, not Python's salted `hash`), so a
restart, a snapshot imported elsewhere and every router of a cluster place an id alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def shard_of(memory_id: str, shards: int) -> int:
    """The shard (0 … shards − 1) that owns `memory_id`."""
    if shards == 1:
        return 0
    digest = hashlib.sha256(memory_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def split(ids: Sequence[str], shards: int) -> list[list[int]]:
    """Positions of `ids` per shard, in the given order (empty lists for idle shards)."""
    out: list[list[int]] = [[] for _ in range(shards)]
    for pos, memory_id in enumerate(ids):
        out[shard_of(memory_id, shards)].append(pos)
    return out
