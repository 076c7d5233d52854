"""ClusterEngine: what the FastAPI service calls instead of an `Engine` when LAM_CLUSTER=ray.

It answers the `Engine` methods the routes use, for banks that are `ClusterBank`s on the
Ray cluster's nodes; the router process holds no memories. Every bank of a router is a
cluster bank (shards ≥ 1, replicas ≤ the nodes). Query and energy are the in-process
sharded bank's code over remote shards (lam_cluster/shard.py), so masks, multi-step
rounds, filters and the prefilter behave as in one process.

The coordinator: the bank → (config, nodes, created_at, incarnation) map is a JSON file in the
router's data directory, written atomically on every bank creation and deletion; a
router that starts again re-attaches to the named replica actors of every bank in it
(`ClusterBank.create` with `get_if_exists`), so a restarted router finds its banks.

Models A and C (query, energy), dynamics and diagnostics run the in-process sharded bank's
code on the bank's gathered view (gathered.py: every memory fetched from the shards, cached
per write sequence); snapshot export and import are snapshots.py, PATCH is patch.py.
Forgetting (strengths, lifetimes, reinforce, the half-life, expiry) runs at the router's
clock and reference time (lam_cluster/forgetting.py; the router's reaper thread deletes
expired memories through the replicated delete); the novelty gate is judged on the merged
pass under the bank's write lock (lam_cluster/novelty.py); text banks are embedded here and
kept by the replicas (lam_cluster/text.py).

Refused with 422 `invalid_parameter` (never a 500): PATCH of the forgetting settings, and
the import of a snapshot with strengths into a bank with a half-life.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from lam_engine import BankConfig, Engine
from lam_engine.clock import SYSTEM_CLOCK, Clock
from lam_engine.config import validate_bank_name
from lam_engine.errors import (
    BankExistsError,
    BankNotFoundError,
    EmptyBankError,
    EmptySelectionError,
    InvalidParameterError,
    MemoryNotFoundError,
)
from lam_engine.filters import parse_filter
from lam_engine.inputs import QueryInput
from lam_engine.reaper import Reaper
from lam_engine.results import BankInfo, EnergyResult, MemoryRecord, QueryBatchResult, UpsertResult
from lam_engine.selection import delete_filter
from lam_engine.shards import ops as shard_ops
from lam_engine.shards import shard_of
from lam_engine.slot import now
from lam_engine.texts import check_embedder
from lam_engine.vectors import as_matrix

from . import forgetting, patch, snapshots
from .calls import ray_module
from .gathered import gathered
from .novelty import gate
from .observe import NULL, Observer
from .router import ClusterBank
from .shard import KEY_BITS, ClusterView
from .text import routed_texts

COORDINATOR_FILE = "cluster_banks.json"
NODE_RESOURCE = "lam_node_"
NAMESPACE = "lam"
DEVICE = "ray"  # a cluster bank's "device": its replicas choose theirs on their nodes
CLOCK: Clock = SYSTEM_CLOCK  # the routers' clock unless one is given (tests set a manual one)


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto": the local one) as a driver. A loopback
    address (127.x, as `lam cluster up` gives) is also the driver's node address, so that
    Ray does not rewrite it to the machine's outward one."""
    ray = ray_module()
    if ray.is_initialized():
        return
    host = address.rsplit(":", 1)[0]
    extra = {"_node_ip_address": host} if host.startswith("127.") else {}
    ray.init(
        address=address,
        namespace=NAMESPACE,
        logging_level="ERROR",
        log_to_driver=False,
        **extra,
    )


class ClusterEngine:
    """The router's backend (see the module docstring); thread-safe like the Engine."""

    def __init__(
        self,
        data_dir: str | Path,
        address: str,
        chunk_bytes: int = 64 << 20,
        clock: Clock | None = None,
        observer: Observer = NULL,  # the service's metrics (observe.py)
    ) -> None:
        connect(address)
        self.chunk_bytes = chunk_bytes
        self.clock = clock or CLOCK
        self.observer = observer
        self._dir = Path(data_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file = self._dir / COORDINATOR_FILE
        self._table = threading.RLock()
        self._banks: dict[str, ClusterBank] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        if self._file.exists():
            for name, meta in json.loads(self._file.read_text()).items():
                cfg = BankConfig.from_dict(meta["config"])
                inc = meta.get("incarnation", "")
                self._banks[name] = ClusterBank.create(
                    name, cfg, meta["nodes"], inc, self.clock, observer
                )
                self._meta[name] = meta
        # The one reaper of the cluster's banks (forgetting.py): replicas run none.
        self._reaper = Reaper(self.reap, self.clock.now)

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self._meta, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._file)

    def close(self) -> None:
        """The replicas are detached actors: they stay up for the next router."""
        self._reaper.stop()

    def reap(self) -> float:
        """Delete every bank's memories expired by now (replicated); the next expiry."""
        with self._table:
            banks = list(self._banks.values())
        return min((forgetting.reap(bank) for bank in banks), default=float("inf"))

    # ---- nodes ------------------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's LAM nodes (those with a `lam_node_<name>` resource), by name."""
        out = []
        for n in ray_module().nodes():
            names = [
                r[len(NODE_RESOURCE) :]
                for r in n.get("Resources", {})
                if r.startswith(NODE_RESOURCE)
            ]
            for name in names:
                addr = f"{n.get('NodeManagerAddress', '')}:{n.get('NodeManagerPort', '')}"
                out.append({"node_id": name, "address": addr, "alive": bool(n.get("Alive"))})
        # A node that came back is listed twice (its dead and its live incarnation): live wins.
        best: dict[str, dict[str, Any]] = {}
        for node in out:
            if node["node_id"] not in best or node["alive"]:
                best[node["node_id"]] = node
        return [best[k] for k in sorted(best)]

    def cluster_info(self) -> dict[str, Any]:
        """GET /v1/cluster (API.md "Sharded banks")."""
        with self._table:
            banks = list(self._banks.items())
        return {
            "nodes": self.nodes(),
            "banks": [{"name": name, "shards": bank.describe()} for name, bank in banks],
        }

    # ---- banks ------------------------------------------------------------------------------
    def _bank(self, name: str) -> ClusterBank:
        bank = self._banks.get(name)
        if bank is None:
            raise BankNotFoundError(f"bank {name!r} not found", {"bank": str(name)[:80]})
        return bank

    def create_bank(self, name: str, config: BankConfig) -> tuple[BankInfo, bool]:
        validate_bank_name(name)
        config = config.validate()
        check_embedder(config)  # a text bank's model loads here, in the router (text.py)
        with self._table:
            existing = self._banks.get(name)
            if existing is not None:
                if existing.config == config:
                    return self.bank_info(name), False
                raise BankExistsError(
                    f"bank {name!r} exists with a different config", {"bank": name}
                )
            nodes = [n["node_id"] for n in self.nodes() if n["alive"]]
            if config.replicas > len(nodes):
                raise InvalidParameterError(
                    f"replicas ({config.replicas}) exceed the cluster's live nodes ({len(nodes)})",
                    {"replicas": config.replicas, "nodes": len(nodes)},
                )
            incarnation = uuid.uuid4().hex[:12]
            bank = ClusterBank.create(name, config, nodes, incarnation, self.clock, self.observer)
            self._banks[name] = bank
            self._meta[name] = {
                "config": config.to_dict(), "nodes": nodes, "created_at": now(),
                "incarnation": incarnation,
            }  # fmt: skip
            self._save()
            return self.bank_info(name), True

    def delete_bank(self, name: str) -> None:
        with self._table:
            bank = self._bank(name)
            del self._banks[name], self._meta[name]
            self._save()  # first: a router restarted meanwhile must not find it again
        bank.destroy()

    def bank_names(self) -> list[str]:
        with self._table:
            return list(self._banks)

    def bank_info(self, name: str) -> BankInfo:
        bank = self._bank(name)
        infos = bank.read_all("info")
        kind = bank.config.prefilter.kind
        return BankInfo(
            name=name,
            config=bank.config,
            count=sum(int(c) for c, _ in infos),
            memory_bytes=sum(int(b) for _, b in infos) * bank.config.replicas,
            device=DEVICE,
            created_at=self._meta[name]["created_at"],
            index={"kind": kind, "shards": [{"kind": kind}] * bank.config.shards},
        )

    def list_banks(self) -> list[BankInfo]:
        out = []
        for name in self.bank_names():
            try:
                out.append(self.bank_info(name))
            except BankNotFoundError:
                continue  # deleted meanwhile
        return out

    def update_bank(self, name: str, **changes: Any) -> BankInfo:
        return patch.update_bank(self, name, **changes)

    # ---- memories -----------------------------------------------------------------------------
    def upsert(
        self,
        name: str,
        vectors: Any,
        ids: Any = None,
        payloads: Any = None,
        *,
        strengths: Any = None,
        ttl_s: Any = None,
        expires_at: Any = None,
        if_novel: float | None = None,
        texts: Any = None,
    ) -> UpsertResult:
        """As `Engine.upsert`: validated and prepared here at the router's now, then routed."""
        bank = self._bank(name)
        t = self.clock.now()
        s, exp = forgetting.resolve(bank, vectors, ids, strengths, ttl_s, expires_at, t)
        batch = bank.prepare(vectors, ids, payloads, strengths=s, expires=exp, stored_at=t)
        assert bank._prep is not None
        kept = routed_texts(bank._prep, batch, texts)
        novel = None if if_novel is None else gate(if_novel, payloads, self.chunk_bytes)
        return bank.store(batch, kept, t=t, gate=novel)

    def reinforce(self, name: str, ids: list[str], strength: float | None = None) -> int:
        return forgetting.reinforce(self._bank(name), ids, strength)

    def get_memory(self, name: str, memory_id: str) -> MemoryRecord:
        bank = self._bank(name)
        record: MemoryRecord = bank.shard_call(
            shard_of(memory_id, bank.config.shards), "get", memory_id
        )
        return record

    def delete_memory(self, name: str, memory_id: str) -> None:
        if self.delete_memories(name, [memory_id]) == 0:
            raise MemoryNotFoundError(f"memory {memory_id!r} not found", {"id": memory_id})

    def delete_memories(
        self, name: str, ids: list[str] | None = None, *, filter: Any = None
    ) -> int:
        bank = self._bank(name)
        flt = delete_filter(ids, filter)  # validated here: a bad request reaches no replica
        return bank.delete(ids, None if flt is None else filter)

    def count(self, name: str, filter: Any = None) -> int:
        bank = self._bank(name)
        parse_filter(filter)
        return bank.count(filter)

    def scroll(
        self,
        name: str,
        limit: int = 100,
        cursor: str | None = None,
        *,
        with_vectors: bool = True,
        filter: Any = None,
    ) -> tuple[list[MemoryRecord], str | None]:
        """A page in shard order, then each shard's store order (every memory once, as on
        one bank; another order). The cursor is API.md's digits: (shard << KEY_BITS) | (the
        shard's own cursor + 1), 0 for a shard's start."""
        bank = self._bank(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidParameterError("limit must be a positive integer", {"limit": limit})
        parse_filter(filter)
        s, local = 0, None
        if cursor:
            code = int(cursor) if cursor.isdigit() else -1
            s, after = code >> KEY_BITS, (code & ((1 << KEY_BITS) - 1)) - 1
            if code < 0 or s >= bank.config.shards:
                raise InvalidParameterError("invalid cursor", {"cursor": cursor[:80]})
            local = None if after < 0 else str(after)
        out: list[MemoryRecord] = []
        while s < bank.config.shards and len(out) < limit:
            page, nxt = bank.shard_call(s, "scroll", limit - len(out), local, with_vectors, filter)
            out += page
            if nxt is not None:
                return out, str((s << KEY_BITS) | (int(nxt) + 1))
            s, local = s + 1, None
        return out, (str(s << KEY_BITS) if s < bank.config.shards else None)

    # ---- retrieval ----------------------------------------------------------------------------
    def _view(self, name: str) -> ClusterView:
        return ClusterView(self._bank(name))

    def _gathered(self, name: str) -> Engine:
        """The in-process engine over the bank's gathered memories (gathered.py)."""
        return gathered(self._bank(name), self.created_at(name)).engine()

    def created_at(self, name: str) -> str:
        """The bank's creation time (a bank deleted meanwhile: read as it was, "now")."""
        return str(self._meta.get(name, {}).get("created_at", now()))

    def reads_little(self, name: str, q: QueryInput, limit_bytes: int) -> bool:
        """Never: a cluster query waits on its shards' replicas (Engine.reads_little)."""
        return False

    def query(self, name: str, queries: QueryInput | Any, **params: Any) -> QueryBatchResult:
        if self._bank(name).config.model != "B":
            return self._gathered(name).query(name, queries, **params)
        view = self._view(name)
        q = (
            queries
            if isinstance(queries, QueryInput)
            else QueryInput.build(queries, dim=view.config.dim, **params)
        )
        q.check_dim(view.config.dim)
        try:
            with view.bank.timed():
                result = shard_ops.query(view, q, name=name, chunk_bytes=self.chunk_bytes)  # type: ignore[arg-type]
            return view.attach_texts(result) if view.config.embedder is not None else result
        except EmptySelectionError:
            if q.filter is None:
                raise EmptyBankError(f"bank {name!r} has no memories", {"bank": name}) from None
            raise

    def energy(
        self,
        name: str,
        states: Any,
        *,
        beta: float | None = None,
        constants: bool = False,
        gradient: bool = False,
        filter: Any = None,
    ) -> EnergyResult:
        if self._bank(name).config.model != "B":
            return self._gathered(name).energy(
                name, states, beta=beta, constants=constants, gradient=gradient, filter=filter
            )
        view = self._view(name)
        v = as_matrix(states, view.config.dim, "states")
        flt = parse_filter(filter) if filter is not None else None
        try:
            with view.bank.timed():
                return shard_ops.energy(
                    view, v, name=name, beta=beta, constants=constants, gradient=gradient,  # type: ignore[arg-type]
                    filter=flt, chunk_bytes=self.chunk_bytes,
                )  # fmt: skip
        except EmptySelectionError:
            if flt is None:
                raise EmptyBankError(f"bank {name!r} has no memories", {"bank": name}) from None
            raise

    # ---- on the gathered view (gathered.py) and snapshots (snapshots.py) ------------------------
    def dynamics(self, name: str, state: Any, **params: Any) -> Any:
        return self._gathered(name).dynamics(name, state, **params)

    def diagnostics(self, name: str, **params: Any) -> Any:
        return self._gathered(name).diagnostics(name, **params)

    def export_snapshot(self, name: str, fileobj: BinaryIO) -> None:
        snapshots.export_snapshot(self, name, fileobj)

    def import_snapshot(self, name: str, fileobj: BinaryIO, **params: Any) -> BankInfo:
        return snapshots.import_snapshot(self, name, fileobj, **params)
