"""lam_cluster: sharded banks on a Ray cluster (API.md "Sharded banks (cluster mode)").

`replica.ShardReplica` is one replica of one shard: a Ray actor (named, detached,
max_restarts=-1) holding an `Engine` with its own data directory on its node; it answers
the `Shard` protocol of lam_engine/shards with numpy partials. `router.ClusterBank` places a
bank's K × R replicas on the nodes (by their `lam_node_<name>` resources, the replicas of a
shard on different nodes), routes writes by id to every live replica of the owning shard,
reads from an active replica, catches up a replica that missed writes from a peer's
snapshot, and merges the shards' partials exactly (lam_engine/math/merge.py), running
lam_engine/shards/ops.py over `shard.RemoteShard`s. `backend.ClusterEngine` is what the
FastAPI service calls in cluster mode (LAM_CLUSTER=ray): a router holding no memories.
Forgetting, the novelty gate and text banks: `forgetting.py` / `timing.py` (one time for
the whole bank: the router's), `novelty.py`, `text.py`.
A shard with no live replica is `calls.ShardUnavailableError` (503 shard_unavailable).
`observe.Observer` is what the router tells of its calls (the service's metrics, the
benchmark's figures): lam_cluster never imports the service.

Ray is imported on use only: `import lam_cluster` needs no cluster.
"""

from .replica import ShardReplica

__all__ = ["ShardReplica"]
