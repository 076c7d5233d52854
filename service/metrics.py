"""lam_* Prometheus metrics, one CollectorRegistry per app (tests build many apps)."""

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
