"""Bounded schemathesis run with auth and small limits: the stateful phase, then a fuzzing phase
with its own seed. 0 server errors, 0 schema violations. scripts/fuzz_long.sh runs ≥ 10 000 cases.
"""

from __future__ import annotations

import os

from tests.reliability.rel_fuzz import ENV, run_schemathesis, seed_demo
from tests.reliability.rel_harness import ServerFactory, figure


def test_stateful_and_fuzzing_with_auth_find_no_5xx_or_schema_violation(
    make_server: ServerFactory,
) -> None:
    server = make_server("fuzz", **{k.removeprefix("LAM_").lower(): v for k, v in ENV.items()})
    seed_demo(server)
    seed = int(os.environ.get("LAM_FUZZ_SEED", "11"))
    stateful = run_schemathesis(server, "stateful", 25, seed, timeout=240)
    assert stateful.returncode == 0, stateful.output[-6000:]
    assert "inferred" in stateful.output, "no links inferred: the stateful phase tested nothing"
    fuzzing = run_schemathesis(server, "fuzzing", 6, seed + 1, timeout=240)
    assert fuzzing.returncode == 0, fuzzing.output[-6000:]
    alive = server.proc is not None and server.proc.poll() is None
    figure("fuzz_bounded", stateful_cases=stateful.cases, fuzzing_cases=fuzzing.cases,
           seed=seed, server_alive=alive)  # fmt: skip
    assert stateful.cases > 50 and fuzzing.cases > 50
    assert alive
    assert "Traceback" not in server.log_text(), server.tail()
