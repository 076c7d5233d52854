#!/usr/bin/env bash
# Long property-based fuzzing of the HTTP API with schemathesis (>= 10 000 generated cases):
# starts a throwaway server on a free loopback port, seeds the "demo" bank the OpenAPI
# examples use, then checks that nothing a client sends yields a 5xx and that every response
# matches its documented schema. The bounded version runs in tests/integration.
#
#   scripts/fuzz_api.sh                  # 700 examples per operation, every phase
#   EXAMPLES=2000 SEED=7 scripts/fuzz_api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-python3}
EXAMPLES=${EXAMPLES:-700}
SEED=${SEED:-$RANDOM}
PORT=${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORK=$(mktemp -d)
BASE="http://127.0.0.1:${PORT}"
SERVER=""

cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER" && wait "$SERVER" 2>/dev/null || true
  fi
  echo "server log and reports kept in $WORK"
}
trap cleanup EXIT

LAM_HOST=127.0.0.1 LAM_PORT="$PORT" LAM_DATA_DIR="$WORK/data" LAM_LOG_LEVEL=warning \
  LAM_MAX_DYNAMICS_STEPS=2000 LAM_MAX_QUERY_STEPS=200 \
  "$PY" -m service >"$WORK/server.log" 2>&1 &
SERVER=$!

for _ in $(seq 1 600); do
  if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.1
done
curl -fsS "$BASE/readyz" >/dev/null

json() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$BASE$1" >/dev/null; }
json /v1/banks '{"name": "demo", "dim": 3}'
json /v1/banks/demo/memories '{"memories": [
  {"id": "m0", "vector": [1, 0, 0]}, {"id": "m1", "vector": [0, 1, 0], "payload": {"i": 1}},
  {"id": "m2", "vector": [0, 0, 1]}, {"id": "m3", "vector": [0.6, 0.8, 0]}]}'

# One worker: hypothesis' lambda-source cache is not thread-safe (spurious "AST constructor
# recursion depth" errors with --workers 2 in schemathesis 4.32).
echo "fuzzing $BASE with $EXAMPLES examples per operation, seed $SEED"
"$PY" -c 'import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())' \
  run "$BASE/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$EXAMPLES" --seed "$SEED" --generation-database none \
  --request-timeout 30 --workers 1 --no-color \
  --report junit --report-junit-path "$WORK/junit.xml"

kill -0 "$SERVER" 2>/dev/null || { echo "server died during fuzzing"; exit 1; }
if grep -q Traceback "$WORK/server.log"; then
  echo "server logged a traceback:"; grep -A20 Traceback "$WORK/server.log" | head -60; exit 1
fi
echo "fuzzing passed"
