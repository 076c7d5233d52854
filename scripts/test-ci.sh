#!/usr/bin/env bash
# `make test`'s tests: the default run, and beside it a second lane whose tests spend most
# of their time waiting (Ray nodes restarting, actors importing torch; servers under a
# load generator), so the two together take about the default run's time on 2 cores.
#
# The second lane: the benchmarks' smoke, the schemathesis fuzz run, the SIGKILL crash
# trials, the console's browser tests and the real-Prometheus scrape (tests/bench/
# test_bench_quick.py, tests/integration/test_schemathesis.py, tests/reliability/
# test_rel_crash.py, tests/ui, tests/integration/test_prometheus.py: ≈ 100, 80, 40, 50 and
# 12 s, mostly spent waiting on servers, browsers and scrapes; taken out of the default run
# here), then the real 3-node loopback Ray cluster's tests marked `cluster_ci`
# (issue 13: node loss with 5 SIGKILLs, equivalence, the router over HTTP, bench_cluster's
# smoke). Its output is printed after the default run's; either failing fails the whole.
# With TYPES_LANE=1 (`make test`) the type check runs beside them too, and fails the whole.
# The API suite against the Ray router (LAM_API_BACKENDS=cluster) is not in it: it is
# CPU-bound (6 replica engines per bank) and would slow the default run past CI's budget.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
lane_dir="$(mktemp -d)"
SMOKE=tests/bench/test_bench_quick.py
FUZZ=tests/integration/test_schemathesis.py
CRASH=tests/reliability/test_rel_crash.py
UI=tests/ui
PROM=tests/integration/test_prometheus.py
(
  "$PY" -m pytest -q -p no:cacheprovider --basetemp "$lane_dir/bench" "$SMOKE" "$FUZZ" "$CRASH" "$UI" "$PROM"
  smoke=$?
  "$PY" -m pytest -q -p no:cacheprovider --basetemp "$lane_dir/ray" -m cluster_ci tests/cluster
  exit $(( smoke != 0 || $? != 0 ))
) >"$lane_dir/log" 2>&1 &
lane=$!
types=
if [ "${TYPES_LANE:-0}" = 1 ]; then
  # `make test`'s type check (mypy, the async twin's codegen check) beside the lanes.
  make --no-print-directory lint-types PY="$PY" >"$lane_dir/types" 2>&1 &
  types=$!
fi
"$PY" -m pytest -q --ignore "$SMOKE" --ignore "$FUZZ" --ignore "$CRASH" --ignore "$UI" --ignore "$PROM" "$@"
main=$?
wait "$lane"
cluster=$?
typed=0
if [ -n "$types" ]; then
  wait "$types"
  typed=$?
fi
echo
echo "== second lane ($SMOKE $FUZZ $CRASH $UI $PROM; -m cluster_ci tests/cluster): exit $cluster"
cat "$lane_dir/log"
if [ -n "$types" ]; then
  echo
  echo "== type check (make lint-types): exit $typed"
  cat "$lane_dir/types"
fi
rm -rf "$lane_dir"
exit $(( main != 0 || cluster != 0 || typed != 0 ))
