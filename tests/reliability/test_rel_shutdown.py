"""Graceful shutdown: SIGTERM while stores are inside the app; they finish, nothing is lost.

The moment is chosen from the server's own gauge: SIGTERM goes out once `lam_inflight_requests`
shows every writer's request inside the app, so those requests are certainly in flight.
"""

from __future__ import annotations

import re
import threading
import time

import httpx

from tests.reliability.rel_harness import (
    ServerFactory,
    audit_batches,
    batch_body,
    figure,
    scroll_all,
    sqlite_check,
)

DIM = 64
K = 300  # memories per batch: big enough that a store takes a while inside the app
WRITERS = 3
_INFLIGHT = re.compile(r"^lam_inflight_requests (\S+)$", re.M)


class Writer(threading.Thread):
    def __init__(self, url: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.url, self.tag = url, tag
        self.outstanding: str | None = None
        self.results: dict[str, int | str] = {}  # prefix → status, or the exception's name
        self.started_at: dict[str, float] = {}

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0) as client:
            for n in range(10_000):
                prefix = f"{self.tag}n{n}k{K}"
                self.started_at[prefix] = time.monotonic()
                self.outstanding = prefix
                try:
                    r = client.post("/v1/banks/g/memories", json=batch_body(prefix, DIM))
                    self.results[prefix] = r.status_code
                except httpx.HTTPError as exc:
                    self.results[prefix] = type(exc).__name__
                    return
                finally:
                    self.outstanding = None


def _inflight(client: httpx.Client) -> int:
    m = _INFLIGHT.search(client.get("/metrics").text)
    assert m, "lam_inflight_requests missing from /metrics"
    return int(float(m.group(1)))


def test_sigterm_drains_inflight_stores_and_reopens_clean(make_server: ServerFactory) -> None:
    server = make_server("term")
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        assert c.post("/v1/banks", json={"name": "g", "dim": DIM}).status_code == 201
    writers = [Writer(server.url, f"w{i}") for i in range(WRITERS)]
    for w in writers:
        w.start()
    must_finish: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        deadline = time.monotonic() + 60
        while not must_finish and time.monotonic() < deadline:
            before = {w.outstanding for w in writers}
            inside = _inflight(c) - 1  # the scrape itself is in flight too
            after = {w.outstanding for w in writers}
            if inside >= WRITERS:  # every writer's request was inside the app at the scrape
                must_finish = (before & after) - {None}  # type: ignore[assignment]
    assert must_finish, "never saw every writer inside the app"
    t_term = time.monotonic()
    code = server.terminate(60)
    took = time.monotonic() - t_term
    for w in writers:
        w.join(30)
        assert not w.is_alive()
    results = {p: s for w in writers for p, s in w.results.items()}
    acked = {p for p, s in results.items() if s == 200}
    unfinished = {p: results.get(p) for p in must_finish if results.get(p) != 200}
    bad = {p: s for p, s in results.items() if isinstance(s, int) and s not in (200, 503)}
    integrity, wal = sqlite_check(server.data_dir)
    server.start()
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        audit = audit_batches(scroll_all(c, "g"), DIM)
    lost = acked - audit.complete
    figure(
        "graceful_shutdown",
        inflight_at_sigterm=len(must_finish),
        inflight_finished_200=len(must_finish) - len(unfinished),
        acknowledged_batches=len(acked),
        lost=len(lost),
        partial=len(audit.partial),
        exit_code=code,
        drain_s=took,
        wal_bytes_after_exit=wal,
        integrity=integrity,
    )
    assert unfinished == {}, f"in-flight stores did not finish with 200: {unfinished}"
    assert bad == {}, bad
    # uvicorn re-raises the captured SIGTERM after a clean shutdown, so -15 is a clean exit too;
    # the log lines prove the lifespan shutdown (batches flushed, store closed) ran to the end.
    assert code in (0, -15), server.tail()
    assert "Application shutdown complete" in server.log_text(), server.tail()
    assert integrity == "ok"
    assert wal in (-1, 0), f"WAL not checkpointed at close: {wal} bytes left"
    assert (lost, audit.partial, audit.corrupt) == (set(), {}, set())
    assert "Traceback" not in server.log_text(), server.tail()
