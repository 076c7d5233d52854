"""How the router calls a bank's replicas: one place for every call, its outcome and time.

`ReplicaCalls` is `router.ClusterBank`'s half that talks to replicas: every call is
`submit` (at the router's (now, t_ref), `ShardReplica.at`) then `wait`, which tells the
bank's observer (observe.py) its shard, method, outcome, latency and sizes; a replica that
fails is marked dead and probed again every PROBE_EVERY_S; one that answers again is
caught up from a live peer's snapshot (under the write lock) before it serves; a shard with
no live replica is `ShardUnavailableError` (503 shard_unavailable).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lam_engine import BankConfig
from lam_engine.errors import LamError

from .calls import ShardUnavailableError, get
from .observe import FAILED, OK, REFUSED, Observer, payload_bytes
from .timing import Ctx, Timing

ACTIVE, CATCHING_UP, DEAD = "active", "catching_up", "dead"
CALL_TIMEOUT_S = 60.0
PROBE_EVERY_S = 2.0  # how often a dead replica is asked whether it is back


@dataclass
class Replica:
    handle: Any
    node: str
    state: str = ACTIVE
    next_probe: float = 0.0
    shard: int = 0
    index: int = 0  # r: the replica's place in its shard's row


@dataclass
class Call:
    """A replica call in flight (`ClusterBank.submit`)."""

    rep: Replica
    method: str
    ref: Any
    sent: int
    t0: float


class ReplicaCalls:
    """The replica-calling half of `router.ClusterBank` (which holds these fields)."""

    name: str
    config: BankConfig
    replicas: list[list[Replica]]
    timeout_s: float
    observer: Observer
    timing: Timing
    _write: threading.RLock
    _acked: list[int | None]
    _waits: threading.local

    if TYPE_CHECKING:

        def ctx(self) -> Ctx: ...

    def submit(self, rep: Replica, method: str, *args: Any, ctx: Ctx | None = None) -> Call:
        """`method(*args)` on a replica at `ctx` (None: the router's now), not waited for."""
        t0 = time.perf_counter()  # before .remote(): Ray serializes the arguments there
        ref = rep.handle.at.remote(ctx or self.ctx(), method, *args)
        return Call(rep, method, ref, payload_bytes(args), t0)

    def wait(self, call: Call, timeout: float | None = None) -> Any:
        """The call's answer (calls.get), told to the observer with its outcome."""
        t = time.perf_counter()
        outcome, out = FAILED, None
        try:
            out = get(call.ref, self.timeout_s if timeout is None else timeout)
            outcome = OK
            return out
        except LamError:
            outcome = REFUSED
            raise
        finally:
            end = time.perf_counter()
            self._waits.total = getattr(self._waits, "total", 0.0) + (end - t)
            compute = out.get("compute_s") if isinstance(out, dict) else None
            self.observer.call(
                self.name, call.rep.shard, call.method, outcome, end - call.t0, call.sent,
                payload_bytes(out) if outcome == OK else 0, compute,
            )  # fmt: skip

    def call(
        self,
        rep: Replica,
        method: str,
        *args: Any,
        ctx: Ctx | None = None,
        timeout: float | None = None,
    ) -> Any:
        return self.wait(self.submit(rep, method, *args, ctx=ctx), timeout)

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Around one read: tells the observer the router's own time in it (`merge`)."""
        t0, w0 = time.perf_counter(), getattr(self._waits, "total", 0.0)
        try:
            yield
        finally:
            waited = getattr(self._waits, "total", 0.0) - w0
            self.observer.merge(self.name, max(0.0, time.perf_counter() - t0 - waited))

    def _state(self, rep: Replica, state: str) -> None:
        if rep.state != state:
            rep.state = state
            self.observer.replica_state(self.name, rep.shard, rep.index, state)

    def _revive(self, s: int) -> None:
        """Catch up every replica of shard s that is not active but answers again."""
        if all(rep.state == ACTIVE for rep in self.replicas[s]):
            return
        # Under the write lock: no write lands between the peer's snapshot and the restore.
        with self._write:
            self._revive_locked(s)

    def _revive_locked(self, s: int) -> None:
        row = self.replicas[s]
        if not any(rep.state == ACTIVE for rep in row):
            self._reactivate(s)
        live = [rep for rep in row if rep.state == ACTIVE]
        for rep in row:
            if rep.state == ACTIVE or not live or time.monotonic() < rep.next_probe:
                continue
            rep.next_probe = time.monotonic() + PROBE_EVERY_S
            try:
                self.call(rep, "applied", timeout=0.5)
            except Exception:
                continue  # still gone (or restarting)
            self._state(rep, CATCHING_UP)
            # At time 0 the peer's snapshot keeps what has expired but is not reaped yet, so
            # the copy is bit-equal to the peer (reads hide those rows at their own time).
            ctx = (0.0, self.ctx()[1])
            try:
                data, seq = self.call(live[0], "snapshot", ctx=ctx, timeout=CALL_TIMEOUT_S)
                self.call(rep, "restore", data, seq, ctx=ctx, timeout=CALL_TIMEOUT_S)
            except Exception:
                self._state(rep, DEAD)  # lost again meanwhile: probed again later
                self.observer.catch_up(self.name, s, False)
                continue
            self._state(rep, ACTIVE)
            self.observer.catch_up(self.name, s, True)

    def _reactivate(self, s: int) -> None:
        """No replica of shard s is active (R = 1 and its node came back, or all R lost): one
        that answers and holds every write acknowledged on s serves again with no catch-up —
        its applied sequence at least the shard's last acknowledged one, or, when that is not
        known (`_acked`), the highest of all its replicas, every one answering. The others
        then catch up from it. A replica behind them never serves first: no write lost."""
        row, now = self.replicas[s], time.monotonic()
        applied: dict[int, int] = {}
        for rep in row:
            if now < rep.next_probe:
                continue
            try:
                applied[rep.index] = int(self.call(rep, "applied", timeout=0.5))
            except Exception:
                rep.next_probe = now + PROBE_EVERY_S  # still gone (or restarting)
        need = self._acked[s]
        if need is None:
            if len(applied) < len(row):
                return
            need = max(applied.values())
        for rep in row:
            if applied.get(rep.index, -1) >= need:
                self._acked[s] = need
                self._state(rep, ACTIVE)
                return

    def _all_live(
        self, s: int, method: str, *args: Any, ctx: Ctx | None = None, acked: int | None = None
    ) -> list[Any]:
        """A write on every active replica of shard s; failing ones are marked dead. `acked`:
        the write's sequence number, acknowledged on s when one or more replica has it."""
        self._revive(s)
        row = [rep for rep in self.replicas[s] if rep.state == ACTIVE]
        ctx = ctx or self.ctx()
        calls = [self.submit(rep, method, *args, ctx=ctx) for rep in row]
        out = []
        for c in calls:
            try:
                out.append(self.wait(c))
            except LamError:
                raise
            except Exception:
                self.dead(c.rep)
        if not out:
            raise ShardUnavailableError.of(self.name, s)
        if acked is not None:
            self._acked[s] = acked
        return out

    def dead(self, rep: Replica) -> None:
        if rep.state != DEAD:
            self.observer.marked_dead(self.name, rep.shard)
        self._state(rep, DEAD)
        rep.next_probe = time.monotonic() + PROBE_EVERY_S

    def reader(self, s: int) -> Replica:
        self._revive(s)
        for rep in self.replicas[s]:
            if rep.state == ACTIVE:
                return rep
        raise ShardUnavailableError.of(self.name, s)

    def read_all(self, method: str, *args: Any, ctx: Ctx | None = None) -> list[Any]:
        """`method` on one active replica of every shard, all at once; a replica that fails
        is marked dead and the shard asked again on another (R tries in all)."""
        out: list[Any] = [None] * self.config.shards
        todo = list(range(self.config.shards))
        ctx = ctx or self.ctx()
        for _ in range(self.config.replicas):
            calls = {s: self.submit(self.reader(s), method, *args, ctx=ctx) for s in todo}
            failed = []
            for s in todo:
                try:
                    out[s] = self.wait(calls[s])
                except LamError:
                    raise
                except Exception:
                    self.dead(calls[s].rep)
                    failed.append(s)
            todo = failed
            if not todo:
                return out
        raise ShardUnavailableError.of(self.name, todo[0], "no replica answered")

    def shard_call(self, s: int, method: str, *args: Any, ctx: Ctx | None = None) -> Any:
        """`method` on one active replica of shard s (another one if it fails)."""
        ctx = ctx or self.ctx()
        for _ in range(self.config.replicas):
            rep = self.reader(s)
            try:
                return self.call(rep, method, *args, ctx=ctx)
            except LamError:
                raise
            except Exception:
                self.dead(rep)
        raise ShardUnavailableError.of(self.name, s, "no replica answered")
