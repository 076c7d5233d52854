"""What the router tells an observer about its calls to the replicas (metrics, benchmarks).

lam_cluster never imports `service`: the service hands `ClusterEngine` an object with these
methods (service/metrics.py `ClusterMetrics`, exporting them to Prometheus), and
bench/bench_cluster.py one that keeps every figure. `Observer` is the protocol; `NULL`
ignores everything (a `ClusterBank` made without one).

Labels stay bounded: a bank name, a shard index, a replica index and a method name of
`ShardReplica` — never an id. Sizes are estimates from the arrays' `nbytes` and the
strings' lengths (`payload_bytes`): the call's arguments are not pickled a second time to
weigh them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

OK, REFUSED, FAILED = "ok", "refused", "failed"  # answered; an engine error (4xx); lost


class Observer(Protocol):
    def call(
        self,
        bank: str,
        shard: int,
        method: str,
        outcome: str,
        seconds: float,
        sent: int,
        received: int,
        compute_s: float | None,
    ) -> None:
        """One replica call: `seconds` from submit to answer as the router waited for it,
        `compute_s` the replica's own time for a pass (None: the method does not report it)."""

    def merge(self, bank: str, seconds: float) -> None:
        """The router's own time in one query or energy: the merge rounds, the update between
        them and the answer's assembly (the wall time less the waits on replica calls)."""

    def replica_state(self, bank: str, shard: int, replica: int, state: str) -> None:
        """A replica's state as the router now sees it (active, catching_up, dead)."""

    def catch_up(self, bank: str, shard: int, ok: bool) -> None:
        """A catch-up of a replica from a peer's snapshot, done or failed."""

    def marked_dead(self, bank: str, shard: int) -> None:
        """A replica marked dead (a call failed or timed out)."""

    def forget(self, bank: str) -> None:
        """The bank is deleted: its series go."""


class NullObserver:
    def call(self, *args: Any) -> None:
        pass

    def merge(self, bank: str, seconds: float) -> None:
        pass

    def replica_state(self, bank: str, shard: int, replica: int, state: str) -> None:
        pass

    def catch_up(self, bank: str, shard: int, ok: bool) -> None:
        pass

    def marked_dead(self, bank: str, shard: int) -> None:
        pass

    def forget(self, bank: str) -> None:
        pass


NULL: Observer = NullObserver()


def payload_bytes(obj: Any, depth: int = 0) -> int:
    """An estimate of the bytes `obj` takes on the wire: arrays and tensors by `nbytes`,
    strings and bytes by length, containers summed, other scalars 8 bytes."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return len(obj)
    if isinstance(obj, str):
        return len(obj)
    if obj is None or isinstance(obj, (bool, int, float)) or depth > 8:
        return 8
    if isinstance(obj, dict):
        return sum(
            payload_bytes(k, depth + 1) + payload_bytes(v, depth + 1) for k, v in obj.items()
        )
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v, depth + 1) for v in obj)
    nbytes = getattr(obj, "nbytes", None)  # a torch tensor, a scalar numpy value
    return int(nbytes) if isinstance(nbytes, int) else 8
