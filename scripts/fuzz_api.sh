#!/usr/bin/env bash
# Long property-based fuzzing of the HTTP API with schemathesis, every check on (>= 10 000
# generated cases with the defaults): a throwaway server on a free loopback port, the "demo"
# bank the OpenAPI examples use, then positive and negative data, status codes, content types,
# headers and Allow against /openapi.json (tests/harness/fuzz.py). The bounded version runs in
# tests/integration/test_schemathesis.py.
#
#   scripts/fuzz_api.sh                  # 600 examples per operation, every phase
#   EXAMPLES=2000 SEED=9 scripts/fuzz_api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PY:-python3}" -m tests.harness.fuzz --examples "${EXAMPLES:-600}" --seed "${SEED:-7}"
