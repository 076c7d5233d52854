"""lam_* Prometheus metrics, one CollectorRegistry per app (tests build many apps).

`ClusterMetrics` is the router's (LAM_CLUSTER=ray) observer of its replica calls
(lam_cluster/observe.py): lam_cluster never imports the service, the service hands it this."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The *_created series double every counter; dashboards never use them.
disable_created_metrics()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_STEP_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 1000)
REPLICA_STATES = ("active", "catching_up", "dead")  # lam_cluster/router.py's


class Metrics:
    """All metrics of docs/internals.md, registered in a private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lam_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.duration = Histogram(
            "lam_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("lam_errors", "Error responses by error code", ["code"], registry=r)
        self.inflight = Gauge("lam_inflight_requests", "Requests in progress", registry=r)
        self.query_batch = Histogram(
            "lam_query_batch_size", "Query rows per engine call", ["bank"],
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.query_steps = Histogram(
            "lam_query_steps", "Update steps per query row", ["bank"],
            buckets=_STEP_BUCKETS, registry=r,
        )  # fmt: skip
        self.prefilter = Counter(
            "lam_prefilter_queries",
            "Query rows by retrieval path",
            ["bank", "outcome"],
            registry=r,
        )
        self.microbatch = Histogram(
            "lam_microbatch_size", "HTTP requests merged into one engine call", ["bank"],
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.query_pending = Gauge(
            "lam_query_pending", "Query requests admitted and not yet answered", registry=r
        )
        self.query_rejected = Counter(
            "lam_query_rejected", "Query requests refused with 503 overloaded", ["bank"],
            registry=r,
        )  # fmt: skip
        self.bank_memories = Gauge("lam_bank_memories", "Memories per bank", ["bank"], registry=r)
        self.bank_bytes = Gauge(
            "lam_bank_memory_bytes", "Device bytes per bank", ["bank"], registry=r
        )
        self.banks = Gauge("lam_banks", "Number of banks", registry=r)
        self.ready = Gauge("lam_ready", "1 once every bank is loaded", registry=r)
        self.disk_free = Gauge("lam_data_dir_free_bytes", "Free bytes in LAM_DATA_DIR", registry=r)
        self.disk_total = Gauge(
            "lam_data_dir_total_bytes", "Size of LAM_DATA_DIR's disk", registry=r
        )
        self._bank_labels: set[str] = set()
        self.cluster = ClusterMetrics(r)

    # ---- refreshers ----------------------------------------------------------------------
    def set_banks(self, infos: Iterable[Any]) -> None:
        """Bank gauges from the engine's BankInfo list; gauges of deleted banks go away."""
        seen = set()
        for info in infos:
            seen.add(info.name)
            self.bank_memories.labels(info.name).set(info.count)
            self.bank_bytes.labels(info.name).set(info.memory_bytes)
        for gone in self._bank_labels - seen:
            self.forget_bank(gone)
        self._bank_labels = seen
        self.banks.set(len(seen))

    def set_bank(self, info: Any) -> None:
        self.bank_memories.labels(info.name).set(info.count)
        self.bank_bytes.labels(info.name).set(info.memory_bytes)
        if info.name not in self._bank_labels:
            self._bank_labels.add(info.name)
            self.banks.set(len(self._bank_labels))

    def forget_bank(self, name: str) -> None:
        for metric in (
            self.bank_memories, self.bank_bytes, self.query_batch,
            self.query_steps, self.microbatch, self.query_rejected,
        ):  # fmt: skip
            with contextlib.suppress(KeyError):
                metric.remove(name)
        for outcome in ("prefiltered", "fallback", "exact"):
            with contextlib.suppress(KeyError):
                self.prefilter.remove(name, outcome)
        if name in self._bank_labels:
            self._bank_labels.discard(name)
            self.banks.set(len(self._bank_labels))

    def set_disk(self, path: Path) -> None:
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return
        self.disk_free.set(usage.free)
        self.disk_total.set(usage.total)

    def observe_query(self, bank: str, result: dict[str, Any], requests: int) -> None:
        """Per engine call: rows, steps per row, retrieval path per row, requests merged."""
        rows = result["results"]
        self.query_batch.labels(bank).observe(len(rows))
        self.microbatch.labels(bank).observe(requests)
        steps = self.query_steps.labels(bank)
        counts = {"prefiltered": 0, "fallback": 0, "exact": 0}
        for row in rows:
            steps.observe(row["steps"])
            if row.get("prefiltered"):
                counts["prefiltered"] += 1
            elif row.get("missed_mass_bound") is not None:
                counts["fallback"] += 1
            else:
                counts["exact"] += 1
        for outcome, n in counts.items():
            if n:
                self.prefilter.labels(bank, outcome).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ClusterMetrics:
    """The lam_cluster_* metrics (docs/operations.md, "Cluster metrics"): the router's calls to
    the shards' replicas, its merge, the replicas' states. Labels: bank, shard, replica (an
    index), method (a ShardReplica method), outcome, state — never an id."""

    def __init__(self, r: CollectorRegistry) -> None:
        shard = ["bank", "shard"]
        self.calls = Counter(
            "lam_cluster_calls", "Replica calls by outcome (ok, refused: an engine error, "
            "failed: lost or timed out)", [*shard, "method", "outcome"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "lam_cluster_call_duration_seconds", "Replica call latency, submit to answer",
            [*shard, "method"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "lam_cluster_shard_compute_seconds", "A shard's pass as its replica timed it",
            [*shard, "method"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.sent = Counter(
            "lam_cluster_sent_bytes", "Bytes of call arguments sent (estimated)", shard,
            registry=r,
        )  # fmt: skip
        self.received = Counter(
            "lam_cluster_received_bytes", "Bytes of answers received (estimated)", shard,
            registry=r,
        )  # fmt: skip
        self.merge_s = Histogram(
            "lam_cluster_merge_seconds", "Router time per query/energy outside replica calls",
            ["bank"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.state = Gauge(
            "lam_cluster_replica_state", "1 for a replica's current state, else 0",
            [*shard, "replica", "state"], registry=r,
        )  # fmt: skip
        self.catchups = Counter(
            "lam_cluster_catchups", "Replica catch-ups from a peer's snapshot",
            [*shard, "outcome"], registry=r,
        )  # fmt: skip
        self.dead = Counter(
            "lam_cluster_replicas_marked_dead", "Replicas marked dead by the router", shard,
            registry=r,
        )  # fmt: skip
        self._children: dict[str, set[tuple[Any, tuple[str, ...]]]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        self._children.setdefault(labels[0], set()).add((metric, labels))
        return metric.labels(*labels)

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
        s = str(shard)
        self._child(self.calls, bank, s, method, outcome).inc()
        self._child(self.latency, bank, s, method).observe(seconds)
        if compute_s is not None:
            self._child(self.compute, bank, s, method).observe(compute_s)
        self._child(self.sent, bank, s).inc(sent)
        if received:
            self._child(self.received, bank, s).inc(received)

    def merge(self, bank: str, seconds: float) -> None:
        self._child(self.merge_s, bank).observe(seconds)

    def replica_state(self, bank: str, shard: int, replica: int, state: str) -> None:
        for st in REPLICA_STATES:
            self._child(self.state, bank, str(shard), str(replica), st).set(st == state)

    def catch_up(self, bank: str, shard: int, ok: bool) -> None:
        self._child(self.catchups, bank, str(shard), "ok" if ok else "failed").inc()

    def marked_dead(self, bank: str, shard: int) -> None:
        self._child(self.dead, bank, str(shard)).inc()

    def forget(self, bank: str) -> None:
        for metric, labels in self._children.pop(bank, set()):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
