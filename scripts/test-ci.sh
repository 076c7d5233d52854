#!/usr/bin/env bash
# `make test`'s tests: the default run, and beside it the cluster lane, whose tests spend
# most of their time waiting (Ray nodes restarting, actors importing torch), so the two
# together take about the default run's time on 2 cores.
#
# The cluster lane (issue 13): the API suite against sharded, replicated banks on the Ray
# router over in-process stand-in actors (LAM_API_BACKENDS=cluster, tests/api/backends.py),
# then the real 3-node loopback Ray cluster's tests marked `cluster_ci` (node loss with 5
# SIGKILLs, equivalence, the router over HTTP, bench_cluster's smoke). Its output is
# printed after the default run's; either failing fails the whole.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
lane_dir="$(mktemp -d)"
(
  LAM_API_BACKENDS=cluster "$PY" -m pytest -q -p no:cacheprovider --basetemp "$lane_dir/api" tests/api \
    && "$PY" -m pytest -q -p no:cacheprovider --basetemp "$lane_dir/ray" -m cluster_ci tests/cluster
) >"$lane_dir/log" 2>&1 &
lane=$!
"$PY" -m pytest -q "$@"
main=$?
wait "$lane"
cluster=$?
echo
echo "== cluster lane (LAM_API_BACKENDS=cluster tests/api; -m cluster_ci tests/cluster): exit $cluster"
cat "$lane_dir/log"
rm -rf "$lane_dir"
exit $(( main != 0 || cluster != 0 ))
