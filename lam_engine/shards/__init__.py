"""Sharded banks: K row blocks of Ξ by a stable hash of the id, answers merged exactly.

`ShardedBank` (bank.py) is a bank of K in-process shards (`LocalShard`, local.py), each a
`MemoryBank` with its own prefilter; `ops.py` is the router side (one merge round per
step, math/merge.py); `protocol.py` is the `Shard` protocol that a cluster's shard
replicas implement too; `placement.py` says which shard owns an id.
"""

from .bank import ShardedBank, shard_config
from .local import LocalShard
from .placement import shard_of, split
from .protocol import Shard, ShardPartials

__all__ = [
    "LocalShard",
    "Shard",
    "ShardPartials",
    "ShardedBank",
    "shard_config",
    "shard_of",
    "split",
]
